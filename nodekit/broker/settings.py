"""A broker kit's settings: kit.json over the defaults (no secret in it; a bridge's password
is in bridge.secret beside it). Read by the kit, the install, the dashboard page and the tools."""
import copy
import json
import os

KIT_FILE = "kit.json"  # the kit's settings (no secrets)
BRIDGE_SECRET = "bridge.secret"  # the remote account's password, 0600, one line
DEFAULTS = {"host": "raspberrypi.local", "ips": [], "port": 8883, "tools_port": 8884, "ws_port": 9001, "ws_tls": True,
            "http_port": 9080, "local_port": 1883, "bind": None, "client_certs": False, "key_type": "rsa",
            "bridge": None, "nodes": []}


def load_settings(out):
    """kit.json over the defaults; a bridge's password is read back from bridge.secret."""
    try:
        with open(os.path.join(out, KIT_FILE)) as f:
            s = dict(copy.deepcopy(DEFAULTS), **json.load(f))
    except FileNotFoundError:
        return copy.deepcopy(DEFAULTS)
    if s["bridge"]:
        try:
            with open(os.path.join(out, BRIDGE_SECRET)) as f:
                s["bridge"]["password"] = f.read().rstrip("\n")
        except FileNotFoundError:
            pass
    return s
