"""The broker kit: everything the Pi's Mosquitto needs, in one folder.

    python -m nodekit.broker.kit broker --host raspberrypi.local --out kit       (make broker)
    python -m nodekit.broker.kit node --room salon --out kit                     (make node)

The folder holds a private CA, the server certificate, mosquitto.conf, the
password and ACL files, dashboard.json, nodes/<room>/config.json and www/ (the
browser dashboard Mosquitto serves; `make dashboard` puts the page there). Running
`mosquitto -c OUT/mosquitto.conf` uses it in place; `make broker-install`
copies it under /etc/mosquitto. Running it again is safe: accounts, passwords
and the CA are kept; only what is asked for changes.

A bridge (--bridge-host ...) sends a copy of everything under maison/ to a
remote broker over TLS, checking its certificate against the CA given with
--bridge-ca (copied into the kit as bridge-ca.pem). The remote password is
read from a file (--bridge-password-file), kept in OUT/bridge.secret (0600) and
in mosquitto.conf, never in kit.json and never printed.
"""
import argparse
import getpass
import ipaddress
import json
import os
import re
import sys

from cryptography.exceptions import InvalidSignature

from nodekit import REPO
from nodekit.broker import certs, dashboard, passwd
from nodekit.broker.dashboard import PAGE_DIR, page_listener  # noqa: F401 (kit.PAGE_DIR, kit.page_listener)
from nodekit.broker.settings import BRIDGE_SECRET, DEFAULTS, KIT_FILE, load_settings  # noqa: F401
from nodekit.errors import Failure, report
from nodekit.rules import ROOT, homeassistant, node_config, platform_of_board, reads, topics

SERVER_DAYS = 825
CLIENT_DAYS = 825
CA_DAYS = 3650
DASHBOARD = "dashboard"  # the browsers' and the PC tools' account: reads everything, commands the LEDs
HOMEASSISTANT = "homeassistant"  # Home Assistant's own: discovery, readings, the LEDs' led/set (homeassistant.json)
TOOLS_PASSWD = "passwd-tools"  # the accounts that are not nodes': the tools' and browsers' listeners
WIFI_PLACEHOLDER = "your-wifi"  # the ssid make node writes until the person puts their network's
BRIDGE_CA = "bridge-ca.pem"  # the remote broker's CA, PEM (Mosquitto's bridge_cafile wants PEM)
BRIDGE_DEFAULTS = {"name": "remote", "port": 8883, "user": None, "client_id": None, "try_private": True}


def _p(out, *names):
    return os.path.join(out, *names)


def _save_settings(out, s):
    s = dict(s)
    if s["bridge"]:  # kit.json holds no secret
        s["bridge"] = {k: v for k, v in s["bridge"].items() if k != "password"}
    with open(_p(out, KIT_FILE), "w") as f:
        json.dump(s, f, indent=2, sort_keys=True)
        f.write("\n")


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _write_text(path, text, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:  # Mosquitto compares the room's UTF-8 bytes
        f.write(text)
    os.chmod(path, mode)


# --- certificates ------------------------------------------------------------
def _ensure_ca(out, s, new_ca):
    key_path, cert_path = _p(out, "ca.key"), _p(out, "ca.pem")
    if os.path.exists(cert_path) and not new_ca:
        return certs.load_key(key_path), certs.load_cert(cert_path), False
    key = certs.new_key(s["key_type"])
    cert = certs.make_ca("Maison MQTT CA (%s)" % s["host"], key, CA_DAYS)
    certs.write_key(key_path, key)
    certs.write_cert(cert_path, cert)
    certs.write_cert(_p(out, "ca.der"), cert, der=True)
    return key, cert, True


# Named by the server certificate besides the kit's host and IPs: a client on the broker's own
# machine (the Pi, or the PC trying the kit) checks the certificate against "localhost".
LOCAL_NAMES, LOCAL_IPS = ["localhost"], ["127.0.0.1"]


def _server_names(s):
    names = ([s["host"]] if not _is_ip(s["host"]) else []) + LOCAL_NAMES
    ips = list(s["ips"]) + ([s["host"]] if _is_ip(s["host"]) else []) + LOCAL_IPS
    return list(dict.fromkeys(names)), list(dict.fromkeys(ips))


def _issue_server(out, s, ca_key, ca_cert):
    names, ips = _server_names(s)
    key = certs.new_key(s["key_type"])
    cert = certs.issue(ca_key, ca_cert, s["host"], key, SERVER_DAYS, dns=names, ips=ips)
    certs.write_key(_p(out, "server.key"), key)
    certs.write_cert(_p(out, "server.pem"), cert)


def _server_names_changed(out, s):
    from cryptography import x509
    cert = certs.load_cert(_p(out, "server.pem"))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have = set(san.get_values_for_type(x509.DNSName)) | {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    names, ips = _server_names(s)
    return have != set(names) | set(ips)


# --- mosquitto.conf and ACL ---------------------------------------------------
MAX_PACKET = 4096  # bytes: mosquitto.conf max_packet_size (see render_conf)
# Kept for an absent client: Mosquitto's default count, and at most 1 MiB (its default has no byte
# bound: 1000 packets of 4 KB, 4 MB per client). A node's commands and a bridge's copies of readings
# are tens of bytes each, so 1 MiB is hundreds of times what the house needs.
MAX_QUEUED = 1000
MAX_QUEUED_BYTES = 1 << 20


def render_conf(out, s, user=None):
    """mosquitto.conf for the kit in place (paths into OUT)."""
    out = os.path.abspath(out)
    bind = (" " + s["bind"]) if s["bind"] else ""
    tls = ["cafile %s" % _p(out, "ca.pem"), "certfile %s" % _p(out, "server.pem"),
           "keyfile %s" % _p(out, "server.key"), "tls_version tlsv1.2"]
    acl = "acl_file %s" % _p(out, "acl")
    every_account = ["allow_anonymous false", "password_file %s" % _p(out, "passwd"), acl]
    # Where a client may pick its own id, no node account logs in: else node A could take node B's
    # id, throw B off in a loop and take its session and queued commands.
    tools_accounts = ["allow_anonymous false", "password_file %s" % _p(out, TOOLS_PASSWD), acl]
    lines = ["# Mosquitto configuration written by `make broker` (nodekit.broker.kit). Regenerated on",
             "# every run: change the kit's settings with make, not here.",
             # Each listener its own accounts: the nodes' port takes every account but fixes each
             # client's id to its account's name, the others take no node account.
             "per_listener_settings true",
             "persistence true",
             "persistence_location %s/" % _p(out, "data"),
             "autosave_interval 60",
             # A session unseen for 30 days is dropped, with what was queued for it: the database
             # holds no client that is gone for good.
             "persistent_client_expiration 30d",
             "log_dest stderr",
             "log_type error", "log_type warning", "log_type notice", "log_type information",
             "connection_messages true",
             # Small packets (a command, its echo, a PUBACK) leave at once, not after the
             # peer's delayed ACK (Nagle): ~40 ms otherwise.
             "set_tcp_nodelay true",
             # Mosquitto 2.0.12+ refuses keepalive 0; the nodes use 60 s. Allow up to 10 min.
             "max_keepalive 600",
             # No packet over 4 KB from any client (its sender is disconnected, nothing is
             # forwarded): an ESP8266's axTLS ends its connection at a TLS record over 5,115 bytes
             # (RT_MAX_PLAIN_LENGTH 1024 + RT_EXTRA 4096 - 5), and a forwarded PUBLISH plus TLS's
             # IV, MAC and padding (64 bytes at most) must stay under that. Discovery configs
             # and stats are under 1 KB.
             "max_packet_size %d" % MAX_PACKET,
             # What the broker keeps for a client that is away (a node's commands, a bridge's
             # copies): bounded, so no account can fill the Pi's memory or disk through a queue.
             "max_queued_messages %d" % MAX_QUEUED,
             "max_queued_bytes %d" % MAX_QUEUED_BYTES,
             ""]
    if user:
        lines[3:3] = ["user %s" % user]
    lines += ["# MQTT over TLS: the nodes. A client's id is its account's name (use_username_as_clientid,",
              "# a listener option): no account can log in as another's id here.",
              "listener %d%s" % (s["port"], bind)] + every_account + ["use_username_as_clientid true"] + tls
    if s["client_certs"]:
        lines += ["require_certificate true", "use_identity_as_username true"]
    lines.append("")
    if s["tools_port"]:
        lines += ["# MQTT over TLS for the PC's tools, Home Assistant and mosquitto_sub/pub (make broker",
                  "# TOOLS_PORT=): the dashboard account only, any client id.",
                  "listener %d%s" % (s["tools_port"], bind)] + tools_accounts + tls + [""]
    if s["local_port"]:
        lines += ["# Plain MQTT on this machine only, for debugging (mosquitto_sub -h localhost)",
                  "listener %d 127.0.0.1" % s["local_port"]] + every_account + [""]
    if s["ws_port"]:
        lines += ["# MQTT over WebSockets: the dashboard", "listener %d%s" % (s["ws_port"], bind),
                  "protocol websockets"] + tools_accounts
        if s["ws_tls"]:
            lines += tls
        else:  # the page and its MQTT on one plain port: everything in clear (make broker WS_TLS=0)
            lines.append("http_dir %s" % _p(out, PAGE_DIR))
        lines.append("")
    # With WS_TLS, the page comes over HTTPS on HTTP_PORT from nodekit/broker/pageserver.py, not from Mosquitto.
    b = s["bridge"]
    if b:
        # Out only: the remote gets a copy, nothing it publishes comes back to the nodes. A fixed
        # client id with cleansession false: QoS 1 copies queue while the link is down.
        lines += ["# A copy of everything under %s/ to a remote broker, over TLS (make broker BRIDGE_HOST=...)" % ROOT,
                  "connection %s" % b["name"], "address %s:%d" % (b["host"], b["port"]),
                  "bridge_cafile %s" % _p(out, b["cafile"]),
                  "bridge_insecure false",  # the remote's certificate must name b["host"]
                  "bridge_tls_version tlsv1.2",
                  "remote_clientid %s" % b["client_id"]]
        if b.get("user"):
            lines.append("remote_username %s" % b["user"])
            if b.get("password"):
                lines.append("remote_password %s" % b["password"])
        lines += ["try_private %s" % ("true" if b.get("try_private", True) else "false"),
                  "cleansession false",
                  # The link state in $SYS/broker/connection/<client id>/state, for the dashboard;
                  # the remote account may write maison/# only.
                  "notifications true", "notifications_local_only true",
                  "topic %s/# out 1" % ROOT, ""]
    return "\n".join(lines)


def render_acl(s):
    """Each account's topics, from the board code's own names (lib/node/topics.py)."""
    every, led_set = "%s/#" % ROOT, topics.LED_SET % "+"
    lines = ["# Who may do what, written by nodekit.broker.kit from kit.json. Nobody else gets anything.",
             "# Everyone may read the broker's version (make doctor checks it). Mosquitto warns at start",
             "# that this pattern has no %c or %u: on purpose, it is the same topic for every account.",
             "pattern read $SYS/broker/version", "",
             "user %s" % DASHBOARD, "topic read %s" % every, "topic read $SYS/#",
             "topic write %s" % topics.COMMAND, "topic write %s" % led_set, "",
             # Home Assistant: what its MQTT integration needs, and no more (no ctrlled, no $SYS)
             "user %s" % HOMEASSISTANT, "topic read %s" % every, "topic read %s/#" % homeassistant.PREFIX,
             "topic write %s" % led_set, ""]
    for room in s["nodes"]:
        # Exactly the topics a node publishes and reads, not maison/<room>/#: under a wildcard
        # an account could keep any number of retained messages. Discovery: "homeassistant": true.
        lines += (["user %s" % room] + ["topic write %s" % (t % room) for t in topics.WRITES]
                  + ["topic read %s" % t for t in reads(room)]
                  + ["topic write %s" % t for t in homeassistant.config_topics(room)] + [""])
    return "\n".join(lines)


def _owner():
    return getpass.getuser()


def write_files(out, s):
    # Run as root, Mosquitto drops to its `user`; the kit's files are its owner's.
    _write_text(_p(out, "mosquitto.conf"), render_conf(out, s, user=_owner()), 0o600)
    _write_text(_p(out, "acl"), render_acl(s), 0o600)
    _write_tools_passwd(out, s)
    write_client_options(out, s)
    _save_settings(out, s)
    dashboard.write_page(_p(out, PAGE_DIR), s)  # the page's settings.json, and the built page if there is one


def _write_tools_passwd(out, s):
    """passwd without the nodes' accounts: for the listeners where a client picks its own id."""
    lines = passwd.read(_p(out, "passwd"))
    _write_text(_p(out, TOOLS_PASSWD), "".join(v + "\n" for u, v in lines.items() if u not in s["nodes"]), 0o600)


# --- mosquitto_sub / mosquitto_pub options ---------------------------------------
CLIENTS = "clients"  # clients/<where>/mosquitto_sub and mosquitto_pub: the dashboard account's options


def write_client_options(out, s):
    """Option files for mosquitto_sub and mosquitto_pub as the dashboard account: the clients read
    $XDG_CONFIG_HOME/mosquitto_sub (one option per line, man mosquitto_sub), so the password is
    never in a command line, where `ps` shows it to every user of the machine. clients/pi talks to
    the kit's host; clients/here to this machine's broker (the Pi itself, or a PC trying the kit)."""
    try:
        with open(_p(out, "dashboard.json")) as f:
            pw = json.load(f)["password"]
    except (OSError, ValueError, KeyError):
        return
    ca = os.path.abspath(_p(out, "ca.pem"))
    for where, host in (("pi", s["host"]), ("here", "localhost")):
        d = _p(out, CLIENTS, where)
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(_p(out, CLIENTS), 0o700)
        os.chmod(d, 0o700)
        # The tools' port: on the nodes' port every client of one account would share one id.
        text = "-h %s\n-p %d\n--cafile %s\n-u %s\n-P %s\n" % (host, s["tools_port"], ca, DASHBOARD, pw)
        for client in ("mosquitto_sub", "mosquitto_pub"):
            _write_text(os.path.join(d, client), text, 0o600)


def client_lines(out, where="pi", room="salon"):
    """The mosquitto_sub/pub lines to print (no password: it is in the option files)."""
    env = "XDG_CONFIG_HOME=%s" % _p(out, CLIENTS, where)
    return ["%s mosquitto_sub -v -t '%s/#'" % (env, ROOT),
            "%s mosquitto_pub -t %s -m 1" % (env, topics.COMMAND),
            "%s mosquitto_pub -t %s -m 0" % (env, topics.COMMAND),
            "%s mosquitto_pub -t %s -m toggle" % (env, topics.LED_SET % room)]


# --- the kit's ports on this machine ----------------------------------------------
def busy_ports(s):
    """[(port, its setting)] of the kit's listeners that something on this machine already holds
    (Debian starts a mosquitto.service on 1883 when the package is installed)."""
    import socket

    import errno

    bind = s["bind"] or ""
    wanted = [(s["port"], "PORT", bind), (s["tools_port"], "TOOLS_PORT", bind), (s["ws_port"], "WS_PORT", bind), (s["local_port"], "LOCAL_PORT", "127.0.0.1"),
              (page_listener(s), "HTTP_PORT", bind)]
    busy = []
    for port, name, addr in wanted:
        if not port:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((addr, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:  # (not EADDRNOTAVAIL: a BIND address for the Pi's LAN)
                    busy.append((port, name))
    return busy


def busy_text(busy):
    return ("port %s in use on this machine (%s), so Mosquitto could not listen there (\"Address already in "
            "use\"): stop what holds it (Debian's own broker: sudo systemctl disable --now mosquitto; "
            "see: sudo ss -ltnp) or give the kit another, e.g. make broker %s=%d" % (
                ", ".join(str(p) for p, _ in busy), ", ".join(n for _, n in busy), busy[0][1], busy[0][0] + 1))


def try_here(out):
    """make broker-try: the kit's Mosquitto in the foreground on this machine, with the client lines
    that reach it here (the certificate names localhost too)."""
    s = load_settings(out)
    if not os.path.exists(_p(out, KIT_FILE)):
        raise Failure("OUT=%s" % out, "not a broker kit: run `make broker OUT=%s` first" % out)
    busy = busy_ports(s)
    if busy:
        raise Failure(busy_text(busy))
    from nodekit.broker import mosquitto

    print("kit: Mosquitto with %s on this machine (Ctrl-C stops it). In another terminal:\n\n  %s\n"
          % (_p(out, "mosquitto.conf"), "\n  ".join(client_lines(out, "here"))), flush=True)
    # The dashboard page over HTTPS beside it, as the Pi's maison-dashboard service serves it.
    page = mosquitto.PageServer(out, page_listener(s), s["bind"], s["host"], www=PAGE_DIR) if page_listener(s) else None
    if page:
        page.start()
    try:
        return _foreground([mosquitto.mosquitto_path(), "-c", _p(out, "mosquitto.conf")])
    finally:
        if page:
            page.stop()


def _foreground(cmd):
    """Run cmd until it ends. Ctrl-C reaches it too (the same process group): wait for it to finish
    (Mosquitto's last save) rather than kill it, as subprocess.call would."""
    import subprocess
    p = subprocess.Popen(cmd)
    try:
        return p.wait()
    except KeyboardInterrupt:
        return p.wait()


# --- bridge -------------------------------------------------------------------
_NAME_RX = re.compile(r"[A-Za-z0-9_.-]+$")


def _copy_bridge_ca(out, path):
    """The remote's CA (PEM, a PEM bundle or DER) into the kit as PEM; nonsense refused."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Failure("BRIDGE_CA: cannot read %s (%s)" % (path, e.strerror or e))
    try:
        if b"-----BEGIN" in data:
            found = x509.load_pem_x509_certificates(data)
        else:
            found = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise Failure("BRIDGE_CA: %s is not a certificate (PEM or DER expected)" % path)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in found)
    dest = _p(out, BRIDGE_CA)
    tmp = dest + ".new"
    certs._write(tmp, pem, 0o644)
    os.replace(tmp, dest)


def _check_secret(what, text):
    # Mosquitto reads the value to the end of its line and trims the ends: a newline or a
    # space at either end would be lost or split the line. Never echo the value itself.
    if text != text.strip() or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise Failure("%s: has a line break, a control character or a space at one end" % what)


def _set_bridge(out, s, changes):
    """Merge changes into the kit's bridge (a new one if there is none) and check it."""
    b = dict(BRIDGE_DEFAULTS, **(s["bridge"] or {}))
    b.update({k: v for k, v in changes.items() if v is not None and k != "cafile"})
    if not b.get("host"):
        raise Failure("BRIDGE_HOST: the remote broker's host name is needed for a bridge")
    if ":" in b["host"] or any(c.isspace() for c in b["host"]):
        raise Failure("BRIDGE_HOST: %r is not a host name or IPv4 address (Mosquitto's bridge "
                       "address cannot take an IPv6 literal; give a name)" % b["host"])
    if not isinstance(b["port"], int) or not 0 < b["port"] < 65536:
        raise Failure("BRIDGE_PORT: %r is not a port number" % (b["port"],))
    if not _NAME_RX.match(b["name"]):
        raise Failure("BRIDGE_NAME: %r: letters, digits, '.', '_' and '-' only" % b["name"])
    b["client_id"] = b["client_id"] or "%s.%s" % (b["name"], s["host"])
    if not _NAME_RX.match(b["client_id"]):
        raise Failure("BRIDGE_CLIENT_ID: %r: letters, digits, '.', '_' and '-' only" % b["client_id"])
    if b["user"] is not None:
        _check_secret("BRIDGE_USER", b["user"])
        if not b["user"]:
            b["user"] = None
    if b.get("password") is not None:
        _check_secret("the bridge password", b["password"])
        if not b["user"]:
            raise Failure("the bridge password needs a user name (BRIDGE_USER)")
    if changes.get("cafile"):
        _copy_bridge_ca(out, changes["cafile"])
    elif not os.path.exists(_p(out, BRIDGE_CA)):
        raise Failure("BRIDGE_CA: the remote broker's CA certificate is needed to check its identity")
    b["cafile"] = BRIDGE_CA
    if b.get("password"):
        _write_text(_p(out, BRIDGE_SECRET), b["password"] + "\n", 0o600)
    s["bridge"] = b


def _remove_bridge(out, s):
    for name in (BRIDGE_SECRET, BRIDGE_CA):
        if os.path.exists(_p(out, name)):
            os.remove(_p(out, name))
    s["bridge"] = None


# --- accounts -----------------------------------------------------------------
def _set_account(out, user, password=None):
    """Add user to the password file unless already there; return its new password or None."""
    lines = passwd.read(_p(out, "passwd"))
    if user in lines:
        return None
    password = password or passwd.new_password()
    lines[user] = passwd.hash_line(user, password)
    _write_text(_p(out, "passwd"), "".join(v + "\n" for v in lines.values()), 0o600)
    return password


def make_broker(out, host=None, ips=None, port=None, tools_port=None, ws_port=None, ws_tls=None, local_port=None,
                bind=None, client_certs=None, key_type=None, renew=False, new_ca=False, bridge=None,
                http_port=None):
    """Write or update the kit. bridge: None keeps the kit's bridge, False removes it, a dict
    (name, host, port, cafile: the remote's CA file to copy in, user, password, client_id,
    try_private) sets or changes it; keys left out or None keep their value."""
    os.makedirs(out, exist_ok=True)
    os.chmod(out, 0o700)
    os.makedirs(_p(out, "data"), mode=0o700, exist_ok=True)
    s = load_settings(out)
    existed = os.path.exists(_p(out, KIT_FILE))
    old_host = s["host"]
    if existed and host is not None and host != old_host and not renew:
        named = [r for r in s["nodes"] if _node_host(out, r) == old_host]
        raise Failure("BROKER_HOST=%s, but this kit is for %s: its server certificate would name %s and no "
                       "longer %s%s. Run again with RENEW=1 to do it: the node configs are then changed to %s "
                       "(boards need make deploy afterwards)" % (
                           host, old_host, host, old_host,
                           ", and %d node config(s) name %s (%s)" % (len(named), old_host, ", ".join(named))
                           if named else "", host))
    for k, v in (("host", host), ("ips", ips), ("port", port), ("tools_port", tools_port), ("ws_port", ws_port), ("ws_tls", ws_tls),
                 ("local_port", local_port), ("bind", bind), ("client_certs", client_certs),
                 ("key_type", key_type), ("http_port", http_port)):
        if v is not None:
            s[k] = v
    for ip in s["ips"]:
        if not _is_ip(ip):
            raise Failure("BROKER_IPS: %r is not an IP address" % ip)
    ports = [(s[k], k.upper()) for k in ("port", "tools_port", "ws_port", "local_port") if s[k]]
    if page_listener(s):
        ports.append((page_listener(s), "HTTP_PORT"))
    for i, (port, name) in enumerate(ports):
        same = [n for p, n in ports[:i] if p == port]
        if same:
            raise Failure("%s: %d is already %s, one of the broker's ports: give each its own" % (name, port, same[0]))
    if bridge is False:
        _remove_bridge(out, s)
    elif bridge:
        _set_bridge(out, s, bridge)
    ca_key, ca_cert, ca_new = _ensure_ca(out, s, new_ca)
    if ca_new or renew or not os.path.exists(_p(out, "server.pem")) or _server_names_changed(out, s):
        _issue_server(out, s, ca_key, ca_cert)
        if existed:
            names, ips = _server_names(s)
            print("kit: new server certificate for %s (IPs: %s%s)" % (
                ", ".join(names), ", ".join(ips), "; BROKER_IPS= to change them" if s["ips"] else ""))
    if existed and s["host"] != old_host:
        for room in s["nodes"]:
            if _retarget_node(out, room, old_host, s["host"]):
                print("kit: nodes/%s/config.json now names %s (make deploy it to its board)" % (room, s["host"]))
    for user in (DASHBOARD, HOMEASSISTANT):  # each its own password: one leaked is one account
        pw = _set_account(out, user)
        if pw:
            _write_text(_p(out, "%s.json" % user), json.dumps({"user": user, "password": pw}) + "\n", 0o600)
    write_files(out, s)
    return s


def _node_host(out, room):
    try:
        with open(_p(out, "nodes", room, "config.json")) as f:
            return json.load(f)["mqtt"]["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _retarget_node(out, room, old, new):
    """A node config that named the kit's old host (mqtt.host, ntp.host) names the new one."""
    path = _p(out, "nodes", room, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return False
    changed = False
    for sec in ("mqtt", "ntp"):
        if isinstance(cfg.get(sec), dict) and cfg[sec].get("host") == old:
            cfg[sec]["host"] = new
            changed = True
    if changed:
        _write_text(path, json.dumps(cfg, indent=2) + "\n", 0o600)
    return changed


def _signed_by(cert_path, ca_cert):
    try:
        certs.load_cert(cert_path).verify_directly_issued_by(ca_cert)
        return True
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False


def _check_room(room, rooms):
    """The node's own rule (lib/node/config.py), then what the kit's files add: the room is
    the account's name in passwd and acl, and a folder under nodes/."""
    object_id = homeassistant.object_id
    try:
        node_config.check_room(room)
    except ValueError as e:
        raise Failure("ROOM: " + str(e).split(": ", 2)[-1])
    if room in ("", DASHBOARD, HOMEASSISTANT, ".", "..") or ":" in room or room != room.strip():
        # Mosquitto ends a passwd user name at ':' and trims both files' names (security_default.c).
        raise Failure("ROOM: %s is not a usable account or folder name (no ':', no space at either end, "
                       "not '.', '..', %r or %r)" % (json.dumps(room, ensure_ascii=False), DASHBOARD, HOMEASSISTANT))
    for other in rooms:
        if other != room and object_id(other) == object_id(room):
            raise Failure("ROOM: %s would share Home Assistant's id %s with room %s: pick another name"
                           % (json.dumps(room, ensure_ascii=False), object_id(room),
                              json.dumps(other, ensure_ascii=False)))


PROBE_PIN = 4  # the data wire of a probe make node writes
SENSORS, PROBES = node_config.SENSORS, node_config.PROBES  # the board's own names (node/config.py)


def add_node(out, room, wifi_ssid=None, wifi_password=None, sensor="adc", board=None):
    if not os.path.exists(_p(out, KIT_FILE)):
        raise Failure("OUT=%s" % out, "not a broker kit: run `make broker OUT=%s` first" % out)
    s = load_settings(out)
    _check_room(room, s["nodes"])
    ndir = _p(out, "nodes", room)
    cfg_path = _p(ndir, "config.json")
    old = {}
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            old = json.load(f)
    user = room
    tls = {"ca": "ca.der"}
    if s["client_certs"]:
        tls.update(cert="client.der", key="client.key.der")
    # client_id: the broker makes it the account's name on the nodes' port anyway; saying so here
    # keeps the node's log lines true.
    mqtt = {"host": s["host"], "port": s["port"], "tls": tls, "keepalive": 60, "client_id": user}
    # Keys the person added or changed (wifi, payload, homeassistant...) are kept; the kit's are renewed.
    cfg = dict(old, room=room, mqtt=mqtt)
    cfg.setdefault("wifi", {"ssid": wifi_ssid or WIFI_PLACEHOLDER, "password": wifi_password or "your-wifi-password"})
    cfg.setdefault("period_s", 5)
    # A probe's data wire: GPIO4 (D2 on a NodeMCU or a Wemos D1 mini) unless the config says
    probe = {"type": sensor, "pin": PROBE_PIN} if sensor in PROBES else {"type": sensor}
    if board:  # the board profile's LED and analog input (firmware/boards.json)
        prof = _board_profile(board)
        cfg.update(board=board, led=prof["led"], sensor=dict(prof["sensor"], type=sensor) if sensor == "adc" else probe)
    cfg.setdefault("led", {"pin": 2, "active_low": True})
    cfg.setdefault("sensor", probe)
    try:  # the node's own check, on the board it is for: what it would refuse at boot is said now
        node_config.check(cfg, platform_of_board(cfg.get("board")))
    except ValueError as e:
        raise Failure("%s (nothing written; make node BOARD= names the board)" % e)
    os.makedirs(ndir, mode=0o700, exist_ok=True)
    ca_cert = certs.load_cert(_p(out, "ca.pem"))
    certs.write_cert(_p(ndir, "ca.der"), ca_cert, der=True)
    if s["client_certs"]:
        if not _signed_by(_p(ndir, "client.der"), ca_cert):  # none yet, or from a replaced CA
            key = certs.new_key(s["key_type"])
            cert = certs.issue(certs.load_key(_p(out, "ca.key")), ca_cert, room, key, CLIENT_DAYS,
                               server=False)
            certs.write_cert(_p(ndir, "client.der"), cert, der=True)
            certs.write_key_der(_p(ndir, "client.key.der"), key)
    else:
        pw = _set_account(out, user)
        if pw is None:  # the account exists: keep its password, it is in the old config
            pw = old.get("mqtt", {}).get("password")
            if not pw:
                raise Failure("account %r exists but %s has no password: remove the line from %s/passwd to make a new one"
                               % (user, cfg_path, out))
        mqtt.update(user=user, password=pw)
    _write_text(cfg_path, json.dumps(cfg, indent=2) + "\n", 0o600)
    if room not in s["nodes"]:
        s["nodes"].append(room)
    write_files(out, s)
    return cfg_path


def _board_profile(name):
    with open(os.path.join(REPO, "firmware", "boards.json")) as f:
        boards = json.load(f)["boards"]
    if name not in boards:
        raise Failure("BOARD=%s" % name, "unknown board (known: %s)" % ", ".join(boards))
    return boards[name]


def _ports(text):
    return int(text) if text not in ("", "0", "off") else 0


def _read_password_file(path):
    try:
        with open(path) as f:
            line = f.readline()
    except OSError as e:
        raise Failure("BRIDGE_PASSWORD_FILE: cannot read %s (%s)" % (path, e.strerror or e))
    line = line.rstrip("\r\n")
    if not line:
        raise Failure("BRIDGE_PASSWORD_FILE: %s is empty (its first line is the password)" % path)
    return line


def _bridge_args(a):
    """make_broker's bridge argument from the command line: None (keep), False, or changes."""
    if a.no_bridge:
        return False
    changes = {"host": a.bridge_host, "port": a.bridge_port, "cafile": a.bridge_ca, "user": a.bridge_user,
               "name": a.bridge_name, "client_id": a.bridge_client_id,
               "try_private": None if a.bridge_try_private is None else a.bridge_try_private == "1"}
    if a.bridge_password_file:
        changes["password"] = _read_password_file(a.bridge_password_file)
    return changes if any(v is not None for v in changes.values()) else None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="kit", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("broker", help="write or update the broker kit")
    b.add_argument("--out", required=True)
    b.add_argument("--host")
    b.add_argument("--ips", help="comma-separated IP addresses for the certificate")
    b.add_argument("--port", type=int)
    b.add_argument("--tools-port", type=int, help="TLS for the PC's tools and Home Assistant (default 8884)")
    b.add_argument("--ws-port", type=_ports)
    b.add_argument("--ws-tls", choices=("0", "1"))
    b.add_argument("--http-port", type=_ports, help="the dashboard page's HTTPS port when WS_TLS=1 (default 9080; 0: none)")
    b.add_argument("--local-port", type=_ports)
    b.add_argument("--client-certs", choices=("0", "1"))
    b.add_argument("--key-type", choices=("rsa", "ec"))
    b.add_argument("--renew", action="store_true")
    b.add_argument("--new-ca", action="store_true")
    g = b.add_argument_group("bridge", "a copy of %s/# to a remote broker over TLS (kept until --no-bridge)" % ROOT)
    g.add_argument("--bridge-host", help="the remote broker's name, as its certificate gives it")
    g.add_argument("--bridge-port", type=int, help="default 8883")
    g.add_argument("--bridge-ca", help="the remote's CA certificate (PEM or DER; copied into the kit); "
                   "for a broker with a public certificate: /etc/ssl/certs/ca-certificates.crt")
    g.add_argument("--bridge-user")
    g.add_argument("--bridge-password-file", help="a file whose first line is the remote password "
                   "(never give a password on the command line)")
    g.add_argument("--bridge-name", help="the connection's name (default: remote)")
    g.add_argument("--bridge-client-id", help="default: NAME.HOST")
    g.add_argument("--bridge-try-private", choices=("0", "1"),
                   help="1 (default) tells a Mosquitto remote it is a bridge; 0 for other brokers")
    g.add_argument("--no-bridge", action="store_true", help="remove the bridge")
    t = sub.add_parser("try", help="run the kit's Mosquitto on this machine, in the foreground")
    t.add_argument("--out", required=True)
    n = sub.add_parser("node", help="add a node's account and write its config.json")
    n.add_argument("--out", required=True)
    n.add_argument("--room", required=True)
    n.add_argument("--board", help="a board profile from firmware/boards.json (its LED pin and ADC)")
    n.add_argument("--sensor", default="adc", choices=SENSORS,
                   help="what the node reads: its ADC (default), a probe on GPIO%d, or a simulated room" % PROBE_PIN)
    n.add_argument("--wifi-ssid")
    n.add_argument("--wifi-password")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "try":
            try_here(a.out)
        elif a.cmd == "broker":
            s = make_broker(a.out, host=a.host, ips=[i for i in a.ips.split(",") if i] if a.ips else None,
                            port=a.port, tools_port=a.tools_port, ws_port=a.ws_port,
                            ws_tls=None if a.ws_tls is None else a.ws_tls == "1", http_port=a.http_port,
                            local_port=a.local_port,
                            client_certs=None if a.client_certs is None else a.client_certs == "1",
                            key_type=a.key_type, renew=a.renew, new_ca=a.new_ca, bridge=_bridge_args(a))
            print("kit: %s ready for %s (TLS on %d for the nodes, %d for the tools%s)" % (a.out, s["host"], s["port"], s["tools_port"],
                  ", WebSockets on %d" % s["ws_port"] if s["ws_port"] else ""))
            b = s["bridge"]
            if b:  # never the password
                print("kit: bridge %r: %s/# copied to %s:%d%s, its CA in %s" % (
                      b["name"], ROOT, b["host"], b["port"], " as %s" % b["user"] if b.get("user") else "",
                      _p(a.out, b["cafile"])))
            print("kit: watch it and drive the nodes from this PC (the password stays in %s):\n  %s"
                  % (_p(a.out, CLIENTS), "\n  ".join(client_lines(a.out, "pi")[:2])))
            busy = busy_ports(s)
            print("kit: try it on this PC first: make broker-try OUT=%s%s" % (
                a.out, " (but %s)" % busy_text(busy) if busy else ""))
            if dashboard.page_url(s):
                print("kit: dashboard: %s%s" % (dashboard.page_url(s), "" if dashboard.built(_p(a.out, PAGE_DIR))
                                                else " (build the page first: make dashboard)"))
        else:
            path = add_node(a.out, a.room, a.wifi_ssid, a.wifi_password, sensor=a.sensor, board=a.board)
            with open(path) as f:
                wifi = json.load(f)["wifi"]
            edit = "edit its wifi section, then " if wifi.get("ssid") in (None, "", WIFI_PLACEHOLDER) else ""
            print("kit: node %r: %s (%s`make flash PORT=/dev/ttyUSB0 CONFIG=%s`, or `make deploy PORT=... "
                  "CONFIG=%s` on a board that runs MicroPython)" % (a.room, path, edit, path, path))
    except (Failure, OSError) as e:
        return report({"broker": "make broker", "try": "make broker-try", "node": "make node"}[a.cmd], e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
