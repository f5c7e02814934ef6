# Certificates from the config (PEM or DER) turned into what the board's
# ssl.wrap_socket wants: DER bytes, which both mbedTLS and axTLS accept.
import sys
from binascii import a2b_base64

# MicroPython on ESP8266 uses axTLS, which cannot verify a certificate chain.
CAN_VERIFY = sys.platform != "esp8266"


def _der_length_ok(der):
    # A DER certificate or key is one SEQUENCE whose length covers the whole file.
    if len(der) < 4 or der[0] != 0x30:
        return False
    n = der[1]
    if n < 0x80:
        return 2 + n == len(der)
    k = n & 0x7F
    if k > 3:
        return False
    size = 0
    for b in der[2:2 + k]:
        size = size << 8 | b
    return 2 + k + size == len(der)


def read_der(path, key, what):
    """Read a PEM or DER file named by config key `key`; return DER bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise ValueError("config: %s: cannot read file %s" % (key, path))
    if b"-----BEGIN" in data:
        start = data.find(b"\n", data.find(b"-----BEGIN")) + 1
        end = data.find(b"-----END", start)
        try:
            data = a2b_base64(data[start:end].replace(b"\n", b"").replace(b"\r", b""))
        except ValueError:
            data = b""
    if not _der_length_ok(data):
        raise ValueError("config: %s: %s is not a valid %s (PEM or DER expected)" % (key, path, what))
    return data


def load(tls_cfg, base=""):
    """Read the files named in config mqtt.tls; paths are relative to the config file."""
    if base and not base.endswith("/"):
        base += "/"
    files = {"ca": read_der(base + tls_cfg["ca"], "mqtt.tls.ca", "certificate")}
    if tls_cfg["cert"]:
        files["cert"] = read_der(base + tls_cfg["cert"], "mqtt.tls.cert", "certificate")
        files["key"] = read_der(base + tls_cfg["key"], "mqtt.tls.key", "private key")
    return files


def wrap_params(files, host):
    """Keyword arguments for ssl.wrap_socket: verify the broker by CA and host name."""
    import ssl
    p = {"server_hostname": host}
    if CAN_VERIFY:
        p["cert_reqs"] = ssl.CERT_REQUIRED
        p["cadata"] = files["ca"]
    if "cert" in files:
        p["cert"] = files["cert"]
        p["key"] = files["key"]
    return p

