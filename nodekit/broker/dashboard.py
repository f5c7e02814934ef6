"""The dashboard page in a broker kit (make dashboard OUT=kit).

    python -m nodekit.broker.dashboard --out kit

`make dashboard` bundles dashboard/ into dashboard/dist (npm, esbuild); this copies
those files into the kit's www/ folder, next to settings.json: where the page finds MQTT
(the WebSockets port, TLS or not, and the names the broker's certificate carries). Nothing
in www/ is secret. With WS_TLS (the default) nodekit/broker/pageserver.py serves www/ over HTTPS on
HTTP_PORT, with the broker's certificate; with WS_TLS=0 Mosquitto serves it in clear (http_dir).
"""
import argparse
import json
import os
import shutil
import sys

from nodekit import REPO
from nodekit.broker import settings
from nodekit.errors import Failure, run

DIST = REPO / "dashboard" / "dist"
SETTINGS = "settings.json"
PAGE_DIR = "www"  # the page's folder in a kit (nodekit/broker/pageserver.py serves it): make dashboard fills it


def page_listener(s):
    """The port of the HTTPS server of the dashboard page (nodekit/broker/pageserver.py), or None.

    With WS_TLS on, the page cannot come from the wss listener: Mosquitto 2.0.11's http_dir
    on a TLS WebSockets listener answers browsers with an HTTP/2 protocol error (Chromium:
    ERR_HTTP2_PROTOCOL_ERROR). In clear, a LAN attacker could rewrite it and read the password
    typed into it. So it comes over HTTPS, with the broker's certificate, from a server of its
    own, and the page's MQTT goes over wss on WS_PORT."""
    return (s.get("http_port") or None) if s["ws_port"] and s["ws_tls"] else None


def page_settings(s):
    """What the page needs to know to reach MQTT: never a password."""
    return {"ws_port": s["ws_port"], "ws_tls": bool(s["ws_tls"]), "names": [s["host"]] + list(s["ips"])}


def page_port(s):
    if not s["ws_port"]:
        return None
    return page_listener(s) if s["ws_tls"] else s["ws_port"]


def page_url(s):
    port = page_port(s)
    host = "[%s]" % s["host"] if ":" in s["host"] else s["host"]
    return "%s://%s:%d/" % ("https" if s["ws_tls"] else "http", host, port) if port else None


def built(www):
    return os.path.exists(os.path.join(www, "index.html"))


def write_page(www, s, dist=DIST):
    """Fill www/ with the built page (when there is one) and settings.json."""
    os.makedirs(www, exist_ok=True)
    os.chmod(www, 0o755)  # Mosquitto reads it, whichever user it runs as
    if os.path.exists(os.path.join(dist, "index.html")):
        for name in os.listdir(www):  # files of an older build go
            if name != SETTINGS:
                os.remove(os.path.join(www, name))
        for name in os.listdir(dist):
            shutil.copyfile(os.path.join(dist, name), os.path.join(www, name))
            os.chmod(os.path.join(www, name), 0o644)
    tmp = os.path.join(www, SETTINGS + ".new")
    with open(tmp, "w") as f:
        json.dump(page_settings(s), f)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(www, SETTINGS))
    return built(www)


def main(argv=None):
    return run("make dashboard", _page, argv)


def _page(argv):
    ap = argparse.ArgumentParser(prog="dashboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the broker kit made by make broker")
    a = ap.parse_args(argv)
    if not os.path.exists(os.path.join(DIST, "index.html")):
        raise Failure(DIST, "not built (make dashboard builds it)")
    if not os.path.exists(os.path.join(a.out, settings.KIT_FILE)):
        print("dashboard: built in %s; no broker kit in %s yet: `make broker OUT=%s` puts the page in it"
              % (os.path.relpath(DIST), a.out, a.out))
        return 0
    s = settings.load_settings(a.out)
    if not page_url(s):
        raise Failure(a.out, "the kit serves no page (it needs WS_PORT, and HTTP_PORT when WS_TLS=1): "
                      "make broker OUT=%s WS_PORT=9001 HTTP_PORT=9080" % a.out)
    write_page(os.path.join(a.out, PAGE_DIR), s)
    print("dashboard: the page is in %s; with `make broker-try OUT=%s` running (on the Pi: make broker-install), "
          "open %s" % (os.path.join(a.out, PAGE_DIR), a.out, page_url(s)))
    if s["ws_tls"]:
        print("dashboard: the page comes over HTTPS and its MQTT over wss://%s:%d: a browser must trust %s "
              "(see the README)" % (s["host"], s["ws_port"], os.path.join(a.out, "ca.pem")))
    else:
        print("dashboard: WS_TLS=0: the page, the password and every message cross the network in clear")
    return 0


if __name__ == "__main__":
    sys.exit(main())
