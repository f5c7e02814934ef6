"""Mosquitto 2 password file lines ($7$: PBKDF2-SHA512), as mosquitto_passwd writes them."""
import base64
import hashlib
import os
import secrets

_ITERATIONS = 101  # mosquitto_passwd's own default


def hash_line(user, password):
    salt = os.urandom(12)
    # The password's UTF-8 bytes, as the node sends them and mosquitto_passwd hashes them.
    h = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, _ITERATIONS)
    return "%s:$7$%d$%s$%s" % (user, _ITERATIONS, base64.b64encode(salt).decode(), base64.b64encode(h).decode())


def new_password():
    return secrets.token_urlsafe(18)


def read(path):
    """{user: line} from a password file, in file order."""
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and ":" in line:
                    out[line.split(":", 1)[0]] = line
    except FileNotFoundError:
        pass
    return out
