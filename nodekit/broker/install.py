"""Install a broker kit on the Pi beside what it already runs (make broker-install OUT=kit, as root).

Copies what Mosquitto needs (never the CA's private key, the nodes' configs or
the dashboard's password) to /etc/mosquitto/maison/, owned root:mosquitto and
readable by Mosquitto's group only, the dashboard page (make dashboard) to
/usr/local/share/maison-dashboard/ (nothing secret there), and the kit's
listeners to /etc/mosquitto/conf.d/maison.conf, which Debian's mosquitto.conf
reads (include_dir): the Pi's own files and the listeners and accounts other
services put in conf.d are left as they are. What the kit cannot sit beside (a
port in use, accounts set for every listener, a setting the kit needs another
way) is refused, one line each, before anything changes. It adds the database
guard that runs before every start, makes chrony serve time to the LAN (the
nodes' NTP server: /etc/chrony/conf.d/maison.conf), restarts the services, then
proves that an anonymous client is refused: a broker that cannot read its files
must never fall back to letting everyone in.

Every file it writes is listed first (add, replace, same); --dry-run stops there.
What it replaced is kept under /var/lib/maison-kit/, and --undo (make
broker-uninstall) puts it back and removes what the install added.
"""
import argparse
import grp
import json
import os
import pwd
import re
import shutil
import ssl
import subprocess
import sys
import time

from nodekit import REPO
from nodekit.broker import dashboard, kit
from nodekit.errors import Failure, report

GUARD = "usr/local/sbin/mosquitto-db-guard"
PAGE = "usr/local/share/maison-dashboard"  # the dashboard page (maison-dashboard.service; WS_TLS=0: http_dir): nothing secret
DROPIN = "etc/systemd/system/mosquitto.service.d/maison.conf"
# The dashboard page over HTTPS (nodekit/broker/pageserver.py, standard library only) as its own service
PAGE_SERVER = "usr/local/lib/maison-kit/pageserver.py"
PAGE_UNIT = "etc/systemd/system/maison-dashboard.service"
# The nodes' time server (their ntp.host defaults to the broker's host). Debian's and Raspberry
# Pi OS's chrony.conf read this folder (`confdir /etc/chrony/conf.d`).
CHRONY_DROPIN = "etc/chrony/conf.d/maison.conf"
CHRONY_CONF = """# make broker-install: serve time to the nodes on the LAN (nodekit/broker/install.py).
# An ESP32 node checks the broker's certificate dates, and after a power cut its clock
# reads 2000 until it gets the time from here.
# Only private (LAN) addresses, and this host itself.
allow 10.0.0.0/8
allow 172.16.0.0/12
allow 192.168.0.0/16
allow 127.0.0.1
allow ::1
# Answer from our own clock when the internet (our upstream servers) is unreachable.
local stratum 10
"""
SECRET = ("server.key", "passwd", "passwd-tools", "acl", "mosquitto.conf")


def _kit_file(kit_dir, name):
    """A file of the kit, as root copies it: a plain name (a kit.json value may name it), a regular
    file, not a symbolic link (a www/ link to /etc/shadow would be served to the LAN)."""
    if not name or "/" in name or name.startswith(".") or any(ord(c) < 32 for c in name):
        raise Failure("kit file name %r is not a plain file name: refused" % name)
    path = os.path.join(kit_dir, name)
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path)):
        raise Failure("%s is a symbolic link or not a regular file: a root install copies only the kit's "
                           "own files, refused" % path)
    return path


def _check_settings(value, key="kit.json"):
    """Every text of kit.json goes into mosquitto.conf, one setting a line: a line break in one
    (kit.json is the user's to edit) would add settings of its own."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_settings(v, "%s: %s" % (key, k))
    elif isinstance(value, list):
        for v in value:
            _check_settings(v, key)
    elif isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Failure("%s has a line break or a control character: refused" % key)


def _put(src_or_text, dest, mode, gid, text=False):
    tmp = dest + ".new"
    if text:
        with open(tmp, "w") as f:
            f.write(src_or_text)
    else:
        shutil.copyfile(src_or_text, tmp)
    os.chown(tmp, 0, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, dest)  # a cut-off install never leaves half a file


# --- beside what the Pi already runs ---------------------------------------------------
MAIN_CONF = "etc/mosquitto/mosquitto.conf"
CONF_D = "etc/mosquitto/conf.d"
# The kit's listeners and settings, read by Debian's include_dir. Read last of the folder (Mosquitto
# reads it in name order): a per_listener_settings of the Pi's own must come before any security
# setting ("per_listener_settings must be set before any other security settings").
KIT_CONF = CONF_D + "/zz-maison.conf"
MANIFEST = "var/lib/maison-kit/installed.json"  # what the install wrote and what it replaced, for undo
BACKUPS = "var/lib/maison-kit/backup"
_KIT_HEADER = "# Mosquitto configuration written by `make broker`"
# Auth options: with per_listener_settings false (Mosquitto's default) they apply to every listener,
# the kit's too; the kit's per_listener_settings true would bind them to one listener instead.
_AUTH = ("allow_anonymous", "password_file", "acl_file", "psk_file", "auth_plugin", "plugin")
# Options Mosquitto refuses twice ("Duplicate ... value"), or that the kit leaves to the Pi's file.
_THEIRS_WIN = ("persistence", "persistence_location", "user", "pid_file", "per_listener_settings")
# Options that may come more than once, each adding to the others.
_ADDING = ("log_dest", "log_type", "include_dir")


def _in_root(root, path):
    root = os.path.abspath(root)
    if root == "/" or path.startswith(root + "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


def _settings(path):
    """[(where, option, value)] of a Mosquitto config file, where = path:line."""
    found = []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            words = line.split(None, 1)
            if words and not words[0].startswith("#"):
                found.append(("%s:%d" % (path, n), words[0], words[1].strip() if len(words) > 1 else ""))
    return found


def _their_settings(root):
    """The Pi's own Mosquitto settings: its main file (or the .orig an earlier kit install kept) and
    every file its include_dir reads but the kit's; where that include_dir is; the main file read
    (None when there is none of the Pi's own)."""
    main = os.path.join(root, MAIN_CONF)
    if not os.path.exists(main):
        return [], None, None
    source = main
    with open(main, errors="replace") as f:
        if f.readline().startswith(_KIT_HEADER):  # an earlier broker-install replaced it
            source = main + ".orig" if os.path.exists(main + ".orig") else None
    if source is None:
        return [], None, None
    found = []
    include = None
    for where, opt, value in _settings(source):
        if include:  # read after the kit's file: it would change the kit's last listener
            found.append((where, "after include_dir", opt))
            continue
        found.append((where, opt, value))
        if opt == "include_dir":
            include = _in_root(root, value)
            for name in sorted(os.listdir(include)) if os.path.isdir(include) else []:
                path = os.path.join(include, name)
                if name.endswith(".conf") and path != os.path.join(root, KIT_CONF):
                    found += _settings(path)
    return found, include, source


def conflicts(root, s, theirs):
    """One line for each thing of the Pi's own set-up the kit cannot sit beside."""
    out = []
    ports = {s[k]: k.upper() for k in ("port", "tools_port", "ws_port", "local_port") if s[k]}
    if kit.page_listener(s):
        ports[kit.page_listener(s)] = "HTTP_PORT"
    per_listener = any(o == "per_listener_settings" and v == "true" for _, o, v in theirs)
    mine = {}  # the kit's global options (before its first listener)
    for line in kit.render_conf("/", s).splitlines():
        if line.startswith("listener "):
            break
        if line and not line.startswith("#"):
            opt, _, value = line.partition(" ")
            mine[opt] = value
    in_listener = False
    for where, opt, value in theirs:
        if opt in ("listener", "port"):
            in_listener = opt == "listener"
            first = value.split()[0] if value.split() else ""
            port = int(first) if first.isdigit() else None
            if port in ports:
                out.append("%s: `%s %s` is also the kit's %s=%d: give the kit another port (make broker %s=...)"
                           % (where, opt, value, ports[port], port, ports[port]))
        elif opt == "after include_dir":
            out.append("%s: `%s` comes after include_dir, so after the kit's listeners, which it would "
                       "change: move it above the include_dir line" % (where, value))
        elif opt == "per_listener_settings" and value != "true":
            out.append("%s: `per_listener_settings %s`: the kit needs it true (each listener its own accounts)"
                       % (where, value))
        elif (opt in _AUTH or opt.startswith(("auth_opt_", "plugin_opt_"))) and not per_listener:
            out.append("%s: `%s` applies to every listener, the kit's too, unless per_listener_settings is "
                       "true: move it under its listener and add `per_listener_settings true`" % (where, opt))
        elif opt == "persistence_location" and value.rstrip("/") != _in_root(root, "/var/lib/mosquitto"):
            out.append("%s: `persistence_location %s`: the kit's database guard watches /var/lib/mosquitto/"
                       % (where, value))
        elif (opt in mine and opt not in _THEIRS_WIN and opt not in _ADDING and not in_listener
              and mine[opt] != value):
            out.append("%s: `%s %s`, where the kit needs `%s %s`: one would change the other's broker"
                       % (where, opt, value, opt, mine[opt]))
    return out


def kit_conf(root, s, theirs):
    """conf.d/maison.conf: the kit's mosquitto.conf, paths into /etc/mosquitto/maison and
    /var/lib/mosquitto, without the options the Pi's own files already set."""
    etc = os.path.join(root, "etc/mosquitto/maison")
    taken = {o for _, o, _ in theirs if o in _THEIRS_WIN}
    lines = []
    for line in kit.render_conf(etc, s, user="mosquitto").splitlines():
        opt = line.split(None, 1)[0] if line.strip() else ""
        if opt in taken:
            continue
        if opt == "persistence_location":
            line = "persistence_location %s/" % os.path.join(root, "var/lib/mosquitto")
        elif opt == "http_dir":
            line = "http_dir %s" % os.path.join(root, PAGE)
        lines.append(line)
    return "\n".join(lines) + "\n"


class Plan:
    """What an install writes, each file new, replaced or the same: shown before anything changes."""

    def __init__(self):
        self.files = []  # (dest, text or source path, mode, gid, is_text)
        self.notes = []

    def put(self, dest, src, mode, gid, text=False):
        self.files.append((dest, src, mode, gid, text))

    def lines(self):
        out = []
        for dest, src, _, _, text in self.files:
            what = "add"
            if os.path.exists(dest):
                with open(dest, "rb") as f:
                    old = f.read()
                if text:
                    new = src.encode()
                else:
                    with open(src, "rb") as f:
                        new = f.read()
                what = "same" if old == new else "replace"
            out.append("%-7s %s" % (what, dest))
        return out + self.notes


def _load_manifest(root):
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"files": {}, "dirs": [], "page": None}


def _save_manifest(root, manifest):
    path = os.path.join(root, MANIFEST)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".new", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(path + ".new", path)


def _record(root, manifest, dest):
    """Before dest is written: what was there, kept once (the Pi's own file, not an earlier kit's)."""
    if dest in manifest["files"]:
        return
    backup = None
    if os.path.exists(dest):
        backup = os.path.join(root, BACKUPS, dest.strip("/").replace("/", "%"))
        os.makedirs(os.path.dirname(backup), mode=0o700, exist_ok=True)
        shutil.copy2(dest, backup)
    manifest["files"][dest] = backup
    _save_manifest(root, manifest)  # before the write: an install cut off half-way can be undone


def _makedirs(manifest, path, mode=0o755):
    todo = []
    while not os.path.isdir(path):
        todo.append(path)
        path = os.path.dirname(path)
    for d in reversed(todo):
        os.mkdir(d, mode if d == todo[0] else 0o755)  # the folders above it: Mosquitto's user passes through
        manifest["dirs"].append(d)


def page_unit(root, s):
    """maison-dashboard.service: the page over HTTPS with the broker's certificate, as Mosquitto's
    user (which may read server.key), with nothing it does not need."""
    for key in ("host", "bind"):  # words of a systemd command line: a space would add arguments
        if s[key] and not re.fullmatch(r"[A-Za-z0-9.:_-]+", s[key]):
            raise Failure("kit.json: %s %r is not a host name or address: refused" % (key, s[key]))
    etc = os.path.join(root, "etc/mosquitto/maison")
    cmd = ["/usr/bin/python3", os.path.join(root, PAGE_SERVER), "--www", os.path.join(root, PAGE),
           "--cert", os.path.join(etc, "server.pem"), "--key", os.path.join(etc, "server.key"),
           "--port", str(kit.page_listener(s)), "--host", s["host"]] + (["--bind", s["bind"]] if s["bind"] else [])
    return ("[Unit]\nDescription=The maison dashboard page over HTTPS (make broker-install)\n"
            "After=network.target\n\n[Service]\nExecStart=%s\nUser=mosquitto\nGroup=mosquitto\n"
            "Restart=on-failure\nNoNewPrivileges=true\nProtectSystem=strict\nProtectHome=true\n"
            "PrivateTmp=true\nPrivateDevices=true\nProtectKernelTunables=true\nProtectControlGroups=true\n"
            "RestrictAddressFamilies=AF_INET AF_INET6\n\n[Install]\nWantedBy=multi-user.target\n"
            % " ".join(cmd))


def undo(root="/", restart=True):
    """make broker-uninstall: put back what the install replaced, remove what it added; returns
    one line per file."""
    if os.geteuid() != 0:
        raise Failure("run as root: sudo make broker-uninstall")
    if not os.path.exists(os.path.join(root, MANIFEST)):
        raise Failure("nothing to undo: no %s (written by broker-install since it installs beside the "
                           "Pi's own set-up)" % os.path.join(root, MANIFEST))
    manifest = _load_manifest(root)
    done = []
    if restart and os.path.join(root, PAGE_UNIT) in manifest["files"]:
        subprocess.run(["systemctl", "disable", "--now", "maison-dashboard"])
    for dest, backup in manifest["files"].items():
        if backup:
            shutil.copy2(backup, dest)
            done.append("put back %s" % dest)
        elif os.path.lexists(dest):
            os.remove(dest)
            done.append("removed %s" % dest)
    if manifest.get("page"):
        shutil.rmtree(manifest["page"], ignore_errors=True)
        done.append("removed %s/" % manifest["page"])
    for d in sorted(manifest["dirs"], key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass  # something else put a file there since: kept
    shutil.rmtree(os.path.join(root, os.path.dirname(MANIFEST)), ignore_errors=True)
    if restart:
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "restart", "mosquitto"]):
            subprocess.run(cmd)
    return done


def install(kit_dir, root="/", restart=True, dry_run=False):
    if os.geteuid() != 0:
        raise Failure("run as root: sudo make broker-install OUT=%s" % kit_dir)
    if not os.path.exists(os.path.join(kit_dir, kit.KIT_FILE)):
        raise Failure("OUT=%s" % kit_dir, "not a broker kit: run `make broker OUT=%s` first" % kit_dir)
    try:
        gid = grp.getgrnam("mosquitto").gr_gid
        uid = pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        raise Failure("no 'mosquitto' user: install Mosquitto first (sudo apt install mosquitto mosquitto-clients)")
    s = kit.load_settings(kit_dir)
    _check_settings(s)
    main = os.path.join(root, MAIN_CONF)
    theirs, include, source = _their_settings(root)
    if source and include is None:
        raise Failure("%s reads no include_dir, so the kit cannot be added beside it: add the line "
                           "`include_dir /etc/mosquitto/conf.d` (Debian's own file has it)" % source)
    found = conflicts(root, s, theirs)
    if found:
        raise Failure("the Pi's Mosquitto set-up and the kit conflict, nothing was changed:\n  "
                           + "\n  ".join(found))
    p = Plan()
    etc = os.path.join(root, "etc/mosquitto/maison")
    files = ["ca.pem", "server.pem", "server.key", "passwd", kit.TOOLS_PASSWD, "acl"]
    if s.get("bridge"):
        files.append(s["bridge"]["cafile"])
    for name in files:
        p.put(os.path.join(etc, name), _kit_file(kit_dir, name), 0o640 if name in SECRET else 0o644, gid)
    orig = main + ".orig"
    put_back = source == orig
    if put_back:
        p.notes.append("put back %s from %s (an earlier broker-install had replaced it)" % (main, orig))
    elif not source:  # no file of the Pi's own (a trial folder): one that reads conf.d, as Debian's does
        p.put(main, "include_dir %s\n" % os.path.join(root, CONF_D), 0o644, 0, text=True)
    p.put(os.path.join(root, KIT_CONF), kit_conf(root, s, theirs), 0o640, gid, text=True)
    p.put(os.path.join(root, GUARD), str(REPO / "nodekit" / "broker" / "dbguard.py"), 0o755, 0)
    p.put(os.path.join(root, DROPIN),
          "[Service]\n# A power cut must not leave a broker that refuses to start, nor a full disk a broker\n"
          "# that comes back with an old state: room is set aside at start and freed for the last save.\n"
          "ExecStartPre=/%s /var/lib/mosquitto/mosquitto.db\n"
          "ExecStop=/%s --release /var/lib/mosquitto/mosquitto.db\n" % (GUARD, GUARD), 0o644, 0, text=True)
    chrony = os.path.exists(os.path.join(root, "etc/chrony/chrony.conf"))
    if chrony:
        p.put(os.path.join(root, CHRONY_DROPIN), CHRONY_CONF, 0o644, 0, text=True)
    if dashboard.page_port(s):
        www = os.path.join(kit_dir, kit.PAGE_DIR)
        if os.path.islink(www):
            raise Failure("%s is a symbolic link: a root install copies only the kit's own files, refused" % www)
        for name in os.listdir(www) if os.path.isdir(www) else []:
            _kit_file(www, name)  # refused now, before anything is written
        p.notes.append("fill    %s/ (the dashboard page)" % os.path.join(root, PAGE))
    if kit.page_listener(s):
        p.put(os.path.join(root, PAGE_SERVER), str(REPO / "nodekit" / "broker" / "pageserver.py"), 0o644, 0)
        p.put(os.path.join(root, PAGE_UNIT), page_unit(root, s), 0o644, 0, text=True)
    if not any(o in ("listener", "port") for _, o, _ in theirs):
        p.notes.append("note    Mosquitto's default listener (localhost:1883, anonymous, on only while no "
                       "listener is set) gives way to the kit's listeners")
    for line in p.lines():
        print("broker-install: %s" % line)
    if dry_run:
        print("broker-install: a dry run: nothing was changed")
        return None
    manifest = _load_manifest(root)
    if put_back:  # the Pi's own file again, the kit beside it: an undo leaves it (not the old kit's)
        os.replace(orig, main)
    for dest, src, mode, g, text in p.files:
        _makedirs(manifest, os.path.dirname(dest), 0o750 if dest.startswith(etc) else 0o755)
        _record(root, manifest, dest)
        _put(src, dest, mode, g, text=text)
    os.chown(etc, 0, gid)
    os.chmod(etc, 0o750)
    data = os.path.join(root, "var/lib/mosquitto")
    _makedirs(manifest, data)
    os.chown(data, uid, gid)
    if dashboard.page_port(s):
        page = os.path.join(root, PAGE)
        if not os.path.exists(page) and not manifest.get("page"):
            manifest["page"] = page
        _makedirs(manifest, os.path.dirname(page))
        _put_page(os.path.join(kit_dir, kit.PAGE_DIR), page)
    _save_manifest(root, manifest)
    if not chrony:
        install_chrony(root)  # says what to run
    if restart:
        if chrony and subprocess.run(["systemctl", "restart", "chrony"]).returncode:
            print("broker-install: `systemctl restart chrony` failed: the nodes get no time from this Pi; "
                  "see: journalctl -u chrony -n 30", file=sys.stderr)
        # enable: started at every boot (make setup leaves a freshly installed package's service off)
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "mosquitto"],
                    ["systemctl", "restart", "mosquitto"]):
            if subprocess.run(cmd).returncode:
                raise Failure("`%s` failed; see: journalctl -u mosquitto -n 30 (sudo make broker-uninstall "
                                   "puts the Pi back as it was)" % " ".join(cmd))
        if kit.page_listener(s):
            for cmd in (["systemctl", "enable", "maison-dashboard"], ["systemctl", "restart", "maison-dashboard"]):
                if subprocess.run(cmd).returncode:
                    raise Failure("`%s` failed; see: journalctl -u maison-dashboard -n 30" % " ".join(cmd))
        time.sleep(1)
        probe_anonymous_refused("localhost", s["port"], os.path.join(etc, "ca.pem"), s["host"])
    return main


def install_chrony(root):
    """The chrony drop-in that makes this Pi the nodes' time server; False (and what to
    run, on stderr) when chrony is not there. Raspberry Pi OS keeps its own clock with
    systemd-timesyncd, which serves time to nobody."""
    main_conf = os.path.join(root, "etc/chrony/chrony.conf")
    if not os.path.exists(main_conf):
        print("broker-install: chrony is not installed, so the nodes get no time from this Pi (an ESP32 "
              "node cannot check the broker's certificate after a power cut): run `sudo apt install chrony` "
              "(it replaces systemd-timesyncd), then `make broker-install` again", file=sys.stderr)
        return False
    with open(main_conf) as f:
        text = f.read()
    if not any(line.split()[:2] in (["confdir", "/etc/chrony/conf.d"], ["include", "/etc/chrony/conf.d/*.conf"])
               for line in text.splitlines()):
        print("broker-install: /etc/chrony/chrony.conf does not read /etc/chrony/conf.d: add the line "
              "`confdir /etc/chrony/conf.d` to it, then `sudo systemctl restart chrony`", file=sys.stderr)
    dest = os.path.join(root, CHRONY_DROPIN)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    _put(CHRONY_CONF, dest, 0o644, 0, text=True)
    return True


def _put_page(src, dest):
    """The kit's www/ (the built page and settings.json) as the whole of dest, swapped in at once."""
    if not dashboard.built(src):
        print("broker-install: the dashboard page is not built: run `make dashboard OUT=...` then install "
              "again (Mosquitto serves an empty folder meanwhile)", file=sys.stderr)
    new = dest + ".new"
    shutil.rmtree(new, ignore_errors=True)
    os.makedirs(new)
    if os.path.islink(src):
        raise Failure("%s is a symbolic link: a root install copies only the kit's own files, refused" % src)
    for name in os.listdir(src) if os.path.isdir(src) else []:
        shutil.copyfile(_kit_file(src, name), os.path.join(new, name))
        os.chmod(os.path.join(new, name), 0o644)
    os.chmod(new, 0o755)
    old = dest + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(dest):
        os.replace(dest, old)
    os.replace(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def probe_anonymous_refused(host, port, cafile, server_name, timeout=10.0):
    """Connect without credentials; anything but a refusal is an error (and stops the broker)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = _anonymous_connack(host, port, cafile, server_name)
        if answer is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if answer is None:
        raise Failure("Mosquitto does not answer on port %d; see: journalctl -u mosquitto -n 30" % port)
    if answer == 0:
        subprocess.run(["systemctl", "stop", "mosquitto"])
        raise Failure("Mosquitto accepted an anonymous client: stopped it. Check /etc/mosquitto/mosquitto.conf")
    return answer


def _anonymous_connack(host, port, cafile, server_name):
    """The CONNACK return code for a client with no user name, or None if no answer."""
    import socket
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False  # the Pi is reached as localhost here; the CA is still checked
    connect = b"\x10\x12\x00\x04MQTT\x04\x02\x00\x3c\x00\x06probe0"
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_name) as s:
                s.sendall(connect)
                r = s.recv(4)
                return r[3] if len(r) == 4 and r[0] == 0x20 else None
    except (OSError, ssl.SSLError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="broker-install", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="the broker kit made by make broker")
    ap.add_argument("--root", default="/", help="install under this folder instead of / (a trial: nothing is "
                                                "restarted)")
    ap.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    ap.add_argument("--undo", action="store_true", help="put back what the install replaced, remove what it added")
    ap.add_argument("--no-restart", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    trial = os.path.abspath(a.root) != "/"
    restart = not (a.no_restart or trial)
    try:
        if a.undo:
            for line in undo(a.root, restart):
                print("broker-install: %s" % line)
            print("broker-install: undone%s" % ("; Mosquitto restarted" if restart else ""))
            return 0
        if not a.out:
            raise Failure("OUT", "give the kit: make broker-install OUT=kit")
        conf = install(a.out, a.root, restart, a.dry_run)
    except (Failure, OSError) as e:
        return report("make broker-uninstall" if a.undo else "make broker-install", e)
    if a.dry_run:
        return 0
    if trial:
        print("broker-install: a trial under %s: nothing outside it was changed or restarted" % a.root)
        return 0
    print("broker-install: installed beside %s; anonymous clients are refused; undo: sudo make "
          "broker-uninstall" % conf if restart else "broker-install: installed beside %s" % conf)
    s = kit.load_settings(a.out)
    if dashboard.page_url(s):
        print("broker-install: the dashboard: %s" % dashboard.page_url(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
