"""make broker-install puts the kit beside the Pi's own Mosquitto set-up safely, and broker-uninstall takes it back.

make broker-install: the installed files are ones Mosquitto, dropped to its own
user, can read; nothing secret beyond what it needs is copied; anonymous is refused."""
import json
import os
import stat
import subprocess
import time

import paho.mqtt.client as paho
import pytest

from nodekit import REPO
from nodekit.broker import install, kit
from nodekit.broker.mosquitto import Mosquitto, free_port


@pytest.fixture
def root(pi_root):
    return pi_root


def _connack(port, user, password, ca=None):
    """The CONNACK code a login gets (paho-mqtt, TLS when a CA is given), or None without one."""
    got = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="t-%s" % user)
    if ca:
        c.tls_set(ca_certs=ca)
    c.username_pw_set(user, password)
    c.on_connect = lambda cl, u, f, rc, p: got.append(rc)
    c.connect("localhost", port)
    c.loop_start()
    for _ in range(100):
        if got:
            break
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    return got[0].value if got else None


def test_installed_broker_reads_its_files_as_mosquitto_and_refuses_anonymous(tmp_path, root):
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost", port=free_port(), tools_port=free_port(), ws_port=0, local_port=free_port())
    cfg = json.load(open(kit.add_node(out, "salon")))
    rc = install.main(["--out", out, "--root", root, "--no-restart"])
    assert rc == 0
    etc = os.path.join(root, "etc/mosquitto/maison")
    assert sorted(os.listdir(etc)) == ["acl", "ca.pem", "passwd", "passwd-tools", "server.key", "server.pem"]  # no ca.key, no nodes
    for name in ("server.key", "passwd", "passwd-tools", "acl"):
        st = os.stat(os.path.join(etc, name))
        assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    conf = os.path.join(root, "etc/mosquitto/mosquitto.conf")  # (none of the Pi's own here: one reading conf.d)
    text = open(os.path.join(root, "etc/mosquitto/conf.d/zz-maison.conf")).read()
    assert "user mosquitto" in text and "persistence_location %s/var/lib/mosquitto/" % root in text
    s = kit.load_settings(out)
    with Mosquitto(conf, s["port"], str(tmp_path / "m.log"), plain_port=s["local_port"]) as m:
        # A client without credentials: refused (CONNACK 5), not let in.
        assert install._anonymous_connack("localhost", s["port"], os.path.join(etc, "ca.pem"), "localhost") == 5
        assert install.probe_anonymous_refused("localhost", s["port"], os.path.join(etc, "ca.pem"), "localhost") == 5
        # The node's account works: Mosquitto, running as its own user, read passwd.
        assert _connack(s["port"], "salon", cfg["mqtt"]["password"], os.path.join(etc, "ca.pem")) == 0, m.log()
        assert "Unable to open pwfile" not in m.log()


def test_refuses_without_root_or_kit(tmp_path, capsys):
    rc = install.main(["--out", str(tmp_path / "nothing"), "--no-restart"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("make broker-install: ") and ("not a broker kit" in err or "run as root" in err)


def test_a_trial_install_into_a_folder_lists_what_it_writes(tmp_path, root):
    # make broker-install OUT=kit ROOT=folder: as on the Pi, under the folder; nothing restarted.
    out = tmp_path / "kit"
    kit.make_broker(str(out), host="localhost")
    r = subprocess.run(["make", "-s", "--no-print-directory", "broker-install", "OUT=%s" % out, "ROOT=%s" % root],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broker-install: add     %s" % os.path.join(root, "etc/mosquitto/conf.d/zz-maison.conf") in r.stdout
    assert "broker-install: add     %s" % os.path.join(root, "etc/mosquitto/maison/acl") in r.stdout
    assert r.stdout.strip().endswith("a trial under %s: nothing outside it was changed or restarted" % root)


@pytest.mark.parametrize("case", ["a www/ link to /etc/shadow", "a bridge CA outside the kit", "a line break in kit.json"])
def test_root_copies_only_the_kits_own_files_and_settings(tmp_path, root, case, capsys):
    out = tmp_path / "kit"
    kit.make_broker(str(out), host="localhost", http_port=free_port())
    settings = json.loads((out / "kit.json").read_text())
    if case == "a www/ link to /etc/shadow":
        (out / "www" / "index.html").unlink(missing_ok=True)
        os.symlink("/etc/shadow", out / "www" / "index.html")
        why = "is a symbolic link or not a regular file"
    elif case == "a bridge CA outside the kit":
        settings["bridge"] = {"name": "remote", "host": "example.org", "port": 8883, "cafile": "../../cron.d/x",
                              "user": None, "password": None, "client_id": "remote.x", "try_private": True}
        why = "is not a plain file name: refused"
    else:
        settings["host"] = "localhost\nallow_anonymous true"
        why = "kit.json: host has a line break or a control character: refused"
    (out / "kit.json").write_text(json.dumps(settings))
    rc = install.main(["--out", str(out), "--root", root, "--no-restart"])
    err = capsys.readouterr().err
    assert rc == 1 and why in err, err
    assert not os.path.exists(os.path.join(root, "etc/mosquitto/mosquitto.conf"))  # stopped before the config


# --- beside what the Pi already runs --------------------------------------------------------
DEBIAN_CONF = """# Place your local configuration in /etc/mosquitto/conf.d/
# (Debian's pid_file line left out: a test's Mosquitto, not systemd's)

persistence true
persistence_location {root}/var/lib/mosquitto/

log_dest stderr

include_dir {root}/etc/mosquitto/conf.d
"""


def _snapshot(root):
    """Every file under root with its bytes (the Pi as it is)."""
    found = {}
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                found[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return found


def _pi_with(root, other):
    """A Pi whose Mosquitto already serves another service: Debian's mosquitto.conf, and conf.d/other.conf."""
    os.makedirs(os.path.join(root, "etc/mosquitto/conf.d"))
    os.makedirs(os.path.join(root, "var/lib/mosquitto"))
    with open(os.path.join(root, "etc/mosquitto/mosquitto.conf"), "w") as f:
        f.write(DEBIAN_CONF.format(root=root))
    with open(os.path.join(root, "etc/mosquitto/conf.d/other.conf"), "w") as f:
        f.write(other)


def test_the_kit_goes_beside_another_services_listener_and_undoes_cleanly(tmp_path, root, capsys):
    # Zigbee2MQTT's own listener and account, set per listener: the install adds the kit beside it,
    # both work, and the undo leaves every file of the Pi as it was.
    from nodekit.broker import passwd
    other_pw = passwd.new_password()
    other_port = free_port()
    pwfile = os.path.join(root, "etc/mosquitto/other.passwd")
    _pi_with(root, "per_listener_settings true\nlistener %d 127.0.0.1\nallow_anonymous false\n"
                   "password_file %s\n" % (other_port, pwfile))
    with open(pwfile, "w") as f:
        f.write(passwd.hash_line("zigbee", other_pw) + "\n")
    before = _snapshot(root)
    out = str(tmp_path / "kit")
    s = kit.make_broker(out, host="localhost", port=free_port(), tools_port=free_port(), ws_port=0,
                        local_port=free_port())
    cfg = json.load(open(kit.add_node(out, "salon")))
    assert install.main(["--out", out, "--root", root, "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "add     %s/etc/mosquitto/conf.d/zz-maison.conf" % root in said and "nothing was changed" in said
    assert _snapshot(root) == before  # a dry run writes nothing
    assert install.main(["--out", out, "--root", root, "--no-restart"]) == 0
    assert open(os.path.join(root, "etc/mosquitto/mosquitto.conf")).read() == DEBIAN_CONF.format(root=root)
    conf = os.path.join(root, "etc/mosquitto/mosquitto.conf")
    with Mosquitto(conf, s["port"], str(tmp_path / "m.log"), plain_port=s["local_port"]) as m:
        for port, user, pw, ca in ((s["port"], "salon", cfg["mqtt"]["password"], os.path.join(out, "ca.pem")),
                                   (other_port, "zigbee", other_pw, None)):
            assert _connack(port, user, pw, ca) == 0, (user, m.log())
    assert install.main(["--undo", "--root", root, "--no-restart"]) == 0
    after = _snapshot(root)
    del after["var/lib/mosquitto/mosquitto.db"]  # the broker's own state, saved as it stopped: kept
    assert after == before, sorted(set(after) ^ set(before))


@pytest.mark.parametrize("other, named", [
    ("listener 8883\n", "`listener 8883` is also the kit's PORT=8883"),
    ("listener 1884\nallow_anonymous true\n", "`allow_anonymous` applies to every listener"),
    ("max_packet_size 268435455\n", "`max_packet_size 268435455`, where the kit needs `max_packet_size 4096`"),
])
def test_what_the_kit_cannot_sit_beside_is_refused_naming_it(tmp_path, root, capsys, other, named):
    _pi_with(root, other)
    before = _snapshot(root)
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost")
    assert install.main(["--out", out, "--root", root, "--no-restart"]) == 1
    err = capsys.readouterr().err
    assert "nothing was changed" in err and "%s/etc/mosquitto/conf.d/other.conf:" % root in err and named in err, err
    assert _snapshot(root) == before


def test_an_earlier_install_that_replaced_mosquitto_conf_is_put_back(tmp_path, root, capsys):
    _pi_with(root, "")
    conf = os.path.join(root, "etc/mosquitto/mosquitto.conf")
    os.rename(conf, conf + ".orig")
    with open(conf, "w") as f:  # what broker-install wrote before it installed beside
        f.write("# Mosquitto configuration written by `make broker` (nodekit.broker.kit). Regenerated on\nlistener 8883\n")
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost")
    assert install.main(["--out", out, "--root", root, "--no-restart"]) == 0
    assert open(conf).read() == DEBIAN_CONF.format(root=root) and not os.path.exists(conf + ".orig")
    # An undo then keeps the Pi's own file: the old kit's one named files the undo removes.
    assert install.main(["--undo", "--root", root, "--no-restart"]) == 0
    assert open(conf).read() == DEBIAN_CONF.format(root=root)
