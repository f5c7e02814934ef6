"""Install a broker kit on the Pi (make broker-install OUT=kit, as root).

Copies what Mosquitto needs (never the CA's private key, the nodes' configs or
the dashboard's password) to /etc/mosquitto/maison/, owned root:mosquitto and
readable by Mosquitto's group only, the dashboard page (make dashboard) to
/usr/local/share/maison-dashboard/ (nothing secret there), writes
/etc/mosquitto/mosquitto.conf (the original is kept once as
mosquitto.conf.orig), adds the database guard that
runs before every start, makes chrony serve time to the LAN (the nodes' NTP
server: /etc/chrony/conf.d/maison.conf), restarts the services, then proves that an anonymous
client is refused: a broker that cannot read its files must never fall back to
letting everyone in.
"""
import argparse
import grp
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import time

from nodekit import REPO, dashboard, kit

GUARD = "usr/local/sbin/mosquitto-db-guard"
PAGE = "usr/local/share/maison-dashboard"  # the dashboard page (http_dir): nothing secret, world-readable
DROPIN = "etc/systemd/system/mosquitto.service.d/maison.conf"
# The nodes' time server (their ntp.host defaults to the broker's host). Debian's and Raspberry
# Pi OS's chrony.conf read this folder (`confdir /etc/chrony/conf.d`).
CHRONY_DROPIN = "etc/chrony/conf.d/maison.conf"
CHRONY_CONF = """# make broker-install: serve time to the nodes on the LAN (nodekit/install.py).
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


class InstallError(Exception):
    pass


def _kit_file(kit_dir, name):
    """A file of the kit, as root copies it: a plain name (a kit.json value may name it), a regular
    file, not a symbolic link (a www/ link to /etc/shadow would be served to the LAN)."""
    if not name or "/" in name or name.startswith(".") or any(ord(c) < 32 for c in name):
        raise InstallError("kit file name %r is not a plain file name: refused" % name)
    path = os.path.join(kit_dir, name)
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path)):
        raise InstallError("%s is a symbolic link or not a regular file: a root install copies only the kit's "
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
        raise InstallError("%s has a line break or a control character: refused" % key)


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


def installed_conf(kit_dir, root, s):
    """The kit's mosquitto.conf with paths into /etc/mosquitto/maison and /var/lib/mosquitto."""
    etc = os.path.join(root, "etc/mosquitto/maison")
    text = kit.render_conf(etc, s, user="mosquitto")
    lines = []
    for line in text.splitlines():
        if line.startswith("persistence_location "):
            line = "persistence_location %s/" % os.path.join(root, "var/lib/mosquitto")
        elif line.startswith("http_dir "):
            line = "http_dir %s" % os.path.join(root, PAGE)
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(kit_dir, root="/", restart=True):
    if os.geteuid() != 0:
        raise InstallError("run as root: sudo make broker-install OUT=%s" % kit_dir)
    if not os.path.exists(os.path.join(kit_dir, kit.KIT_FILE)):
        raise InstallError("%s is not a broker kit: run `make broker OUT=%s` first" % (kit_dir, kit_dir))
    try:
        gid = grp.getgrnam("mosquitto").gr_gid
        uid = pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        raise InstallError("no 'mosquitto' user: install Mosquitto first (sudo apt install mosquitto mosquitto-clients)")
    s = kit.load_settings(kit_dir)
    _check_settings(s)
    etc = os.path.join(root, "etc/mosquitto/maison")
    os.makedirs(etc, exist_ok=True)
    os.chown(etc, 0, gid)
    os.chmod(etc, 0o750)
    files = ["ca.pem", "server.pem", "server.key", "passwd", kit.TOOLS_PASSWD, "acl"]
    if s.get("bridge"):
        files.append(s["bridge"]["cafile"])
    for name in files:
        _put(_kit_file(kit_dir, name), os.path.join(etc, name), 0o640 if name in SECRET else 0o644, gid)
    data = os.path.join(root, "var/lib/mosquitto")
    os.makedirs(data, exist_ok=True)
    os.chown(data, uid, gid)
    if dashboard.page_port(s):
        _put_page(os.path.join(kit_dir, kit.PAGE_DIR), os.path.join(root, PAGE))
    conf = os.path.join(root, "etc/mosquitto/mosquitto.conf")
    if os.path.exists(conf) and not os.path.exists(conf + ".orig"):
        shutil.copy2(conf, conf + ".orig")
    _put(installed_conf(kit_dir, root, s), conf, 0o640, gid, text=True)
    guard = os.path.join(root, GUARD)
    os.makedirs(os.path.dirname(guard), exist_ok=True)
    _put(str(REPO / "nodekit" / "dbguard.py"), guard, 0o755, 0)
    dropin = os.path.join(root, DROPIN)
    os.makedirs(os.path.dirname(dropin), exist_ok=True)
    _put("[Service]\n# A power cut must not leave a broker that refuses to start, nor a full disk a broker\n"
         "# that comes back with an old state: room is set aside at start and freed for the last save.\n"
         "ExecStartPre=/%s /var/lib/mosquitto/mosquitto.db\n"
         "ExecStop=/%s --release /var/lib/mosquitto/mosquitto.db\n" % (GUARD, GUARD), dropin, 0o644, 0, text=True)
    chrony = install_chrony(root)
    if restart:
        if chrony and subprocess.run(["systemctl", "restart", "chrony"]).returncode:
            print("broker-install: `systemctl restart chrony` failed: the nodes get no time from this Pi; "
                  "see: journalctl -u chrony -n 30", file=sys.stderr)
        # enable: started at every boot (make setup leaves a freshly installed package's service off)
        for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "mosquitto"],
                    ["systemctl", "restart", "mosquitto"]):
            if subprocess.run(cmd).returncode:
                raise InstallError("`%s` failed; see: journalctl -u mosquitto -n 30" % " ".join(cmd))
        time.sleep(1)
        probe_anonymous_refused("localhost", s["port"], os.path.join(etc, "ca.pem"), s["host"])
    return conf


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
        raise InstallError("%s is a symbolic link: a root install copies only the kit's own files, refused" % src)
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
        raise InstallError("Mosquitto does not answer on port %d; see: journalctl -u mosquitto -n 30" % port)
    if answer == 0:
        subprocess.run(["systemctl", "stop", "mosquitto"])
        raise InstallError("Mosquitto accepted an anonymous client: stopped it. Check /etc/mosquitto/mosquitto.conf")
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
    ap.add_argument("--out", required=True, help="the broker kit made by make broker")
    ap.add_argument("--root", default="/", help="install under this folder instead of / (a trial: nothing is "
                                                "restarted, and the files it would write are listed)")
    ap.add_argument("--no-restart", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    trial = os.path.abspath(a.root) != "/"
    try:
        conf = install(a.out, a.root, restart=not (a.no_restart or trial))
    except (InstallError, OSError) as e:
        print("broker-install: %s" % e, file=sys.stderr)
        return 1
    if trial:  # what an install on the Pi would write, each file under the trial folder
        for d, _, names in sorted(os.walk(a.root)):
            for n in sorted(names):
                print("broker-install: wrote %s" % os.path.join(d, n))
        print("broker-install: a trial under %s: nothing outside it was changed or restarted" % a.root)
        return 0
    print("broker-install: installed %s; anonymous clients are refused" % conf if not a.no_restart
          else "broker-install: installed %s" % conf)
    s = kit.load_settings(a.out)
    if dashboard.page_url(s):
        print("broker-install: the dashboard: %s" % dashboard.page_url(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
