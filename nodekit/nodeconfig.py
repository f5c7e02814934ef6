"""A node's config.json checked on the PC by the node's own validation (lib/node/config.py),
so `make flash`, `make deploy` and the board say the same thing about the same file."""
import os
import sys

from nodekit import REPO

if str(REPO / "lib") not in sys.path:
    sys.path.insert(0, str(REPO / "lib"))
from node import config as node_config  # noqa: E402  (imports only json)


def check_file(path):
    """(checked config, [files the config names, relative to its folder]); ValueError if wrong."""
    cfg = node_config.load(str(path))
    base = os.path.dirname(os.path.abspath(path))
    files = [f for f in (cfg["mqtt"]["tls"] or {}).values() if f]
    for f in files:
        if not os.path.isfile(os.path.join(base, f)):
            raise ValueError("config: %s names %s, which is not next to it" % (path, f))
    return cfg, files
