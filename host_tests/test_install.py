"""make broker-install: the installed files are ones Mosquitto, dropped to its own
user, can read; nothing secret beyond what it needs is copied; anonymous is refused."""
import json
import os
import stat
import subprocess

import paho.mqtt.client as paho
import pytest

from nodekit import REPO, install, kit
from nodekit.broker import Mosquitto, free_port


@pytest.fixture
def root(pi_root):
    return pi_root


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
    conf = os.path.join(root, "etc/mosquitto/mosquitto.conf")
    text = open(conf).read()
    assert "user mosquitto" in text and "persistence_location %s/var/lib/mosquitto/" % root in text
    s = kit.load_settings(out)
    with Mosquitto(conf, s["port"], str(tmp_path / "m.log"), plain_port=s["local_port"]) as m:
        # A client without credentials: refused (CONNACK 5), not let in.
        assert install._anonymous_connack("localhost", s["port"], os.path.join(etc, "ca.pem"), "localhost") == 5
        assert install.probe_anonymous_refused("localhost", s["port"], os.path.join(etc, "ca.pem"), "localhost") == 5
        # The node's account works: Mosquitto, running as its own user, read passwd.
        ok = []
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="t")
        c.tls_set(ca_certs=os.path.join(etc, "ca.pem"))
        c.username_pw_set("salon", cfg["mqtt"]["password"])
        c.on_connect = lambda cl, u, f, rc, p: ok.append(rc)
        c.connect("localhost", s["port"])
        c.loop_start()
        for _ in range(100):
            if ok:
                break
            __import__("time").sleep(0.05)
        c.loop_stop()
        assert ok and ok[0] == 0, (ok, m.log())
        assert "Unable to open pwfile" not in m.log()


def test_refuses_without_root_or_kit(tmp_path, capsys):
    rc = install.main(["--out", str(tmp_path / "nothing"), "--no-restart"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("broker-install: ") and ("not a broker kit" in err or "run as root" in err)


def test_a_trial_install_into_a_folder_lists_what_it_writes(tmp_path, root):
    # make broker-install OUT=kit ROOT=folder: as on the Pi, under the folder; nothing restarted.
    out = tmp_path / "kit"
    kit.make_broker(str(out), host="localhost")
    r = subprocess.run(["make", "-s", "--no-print-directory", "broker-install", "OUT=%s" % out, "ROOT=%s" % root],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broker-install: wrote %s" % os.path.join(root, "etc/mosquitto/mosquitto.conf") in r.stdout
    assert "broker-install: wrote %s" % os.path.join(root, "etc/mosquitto/maison/acl") in r.stdout
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
