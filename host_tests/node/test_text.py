"""A French household's room and password work end to end, and a name that cannot work is refused in one line.

Text is bytes on the wire: a French household's room `séjour` and password `mot2passé`
work end to end (the CONNECT's client id, user and password, the topics, the Last Will and
Home Assistant's discovery topic all as UTF-8 bytes, the same under both runtimes and in the
kit's ACL), and a name that cannot work is refused in one line at `make node` and at boot."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from nodekit import REPO
from nodekit.broker import kit, passwd
from nodekit.errors import Failure
from nodekit.sim import simnode
from node import config as node_config
from node import homeassistant

ROOM = "séjour"
PASSWORD = "mot2passé"  # never printed: the tests look for it in what the tools say
HA_ID = "maison_sejour"  # Home Assistant's topics take [a-zA-Z0-9_-] only


def set_password(b, room, password):
    """The account's password in the kit's passwd file (as mosquitto_passwd would write it)
    and in the node's config.json; the broker reloads and is seen to take it."""
    path = os.path.join(b.out, "passwd")
    lines = passwd.read(path)
    lines[room] = passwd.hash_line(room, password)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(v + "\n" for v in lines.values()))
    cfg_path = os.path.join(b.out, "nodes", room, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["mqtt"]["password"] = password
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    b.mosq.reload()
    b._wait_login(room)  # a paho client sends the UTF-8 user name and password


def accented_node(b, **changes):
    path = b.node_config(ROOM, **changes)
    set_password(b, ROOM, PASSWORD)
    return path


def test_an_accented_room_and_password_work_end_to_end(broker, start_node, runtime):
    w = broker.witness("maison/#", "homeassistant/#", user=broker.homeassistant["user"],
                       password=broker.homeassistant["password"])
    node = start_node(accented_node(broker, homeassistant=True, period_s=0.5), runtime)
    value = w.next("maison/séjour/valeur", timeout=30)[1]
    assert 15 < float(value) < 30
    node.wait_log(r"mqtt  connected to localhost:\d+ as séjour ")

    # Home Assistant's discovery topics: the same id under both runtimes, allowed by the
    # kit's ACL (Mosquitto drops a refused publish silently: the witness sees only allowed ones).
    sensor = json.loads(w.next("homeassistant/sensor/%s/valeur/config" % HA_ID)[1])
    switch = json.loads(w.next("homeassistant/switch/%s/led/config" % HA_ID)[1])
    assert sensor["state_topic"] == "maison/séjour/valeur"
    assert switch["command_topic"] == "maison/séjour/led/set"
    assert sensor["device"]["name"] == "maison séjour"
    discovery = [m[0] for m in w.seen if m[0].startswith("homeassistant/")]
    assert all(re.fullmatch(r"homeassistant/\w+/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config", t) for t in discovery)

    # The room's own command topic and ctrlled drive the LED.
    dash = broker.witness("maison/#")  # the household's commands (Home Assistant's account has no ctrlled)
    for topic, payload, on in (("maison/séjour/led/set", b"1", True), ("ctrlled", b"0", False)):
        dash.publish(topic, payload)
        w.next("maison/séjour/led", where=lambda m: m[1] == (b"1" if on else b"0"))
        deadline = time.monotonic() + 10
        while node.led_on() != on and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.led_on() == on, topic

    # The Last Will, on the accented status topic, when the board dies.
    node.sim._kill()
    w.next("maison/séjour/status", where=lambda m: m[1] == b"offline", timeout=120)
    assert PASSWORD not in node.log() and "Traceback" not in node.log()


# --- one rule for the ids made from a room ---------------------------------------------------
ROOMS = ["salon", "séjour", "Salle à manger", "chambre d'Élodie", "cuisine 2", "sous-sol_1",
         "ÀÉÎÕÜçñß×÷ÿ", "pièce 日本", "a.b c", "-_-"]


def _vm(script):
    mp = simnode.micropython_path()
    if not mp:
        pytest.skip("the MicroPython VM is not available here")
    r = subprocess.run([mp, "-c", "import sys; sys.path[:0] = [%r, %r]\n" % (
        str(REPO / "lib"), str(REPO / "nodekit" / "sim" / "compat")) + script],
        capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def test_the_home_assistant_id_is_the_same_in_both_runtimes():
    out = _vm("import json\nfrom node import homeassistant\n"
              "print(json.dumps([homeassistant.object_id(r) for r in json.loads(%r)]))" % json.dumps(ROOMS))
    assert json.loads(out) == [homeassistant.object_id(r) for r in ROOMS]
    ids = dict(zip(ROOMS, json.loads(out)))
    assert ids["séjour"] == "maison_sejour"
    assert ids["Salle à manger"] == "maison_Salle_a_manger"
    assert ids["salon"] == "maison_salon"  # ASCII rooms keep their id (and their Home Assistant entities)
    assert ids["pièce 日本"] == "maison_piece___"
    for i in ids.values():
        assert re.fullmatch(r"[a-zA-Z0-9_-]+", i), i


def test_the_kit_acl_allows_the_discovery_topic_the_node_uses(tmp_path):
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost")
    kit.add_node(out, ROOM)
    with open(os.path.join(out, "acl"), encoding="utf-8") as f:
        acl = f.read()
    block = acl[acl.index("user séjour\n"):].split("\n\n")[0].splitlines()
    assert block == ["user séjour"] + ["topic write maison/séjour/%s" % t for t in ("valeur", "humidite", "status", "led", "stats")] + [
        "topic read ctrlled", "topic read maison/séjour/led/set",
        "topic write homeassistant/sensor/maison_sejour/valeur/config",
        "topic write homeassistant/sensor/maison_sejour/humidite/config",
        "topic write homeassistant/switch/maison_sejour/led/config"]


# --- what cannot work is refused in one line ---------------------------------------------------
BAD_ROOMS = [
    ("a/b", "room"), ("a+b", "room"), ("#", "room"),
    ("a\x00b", "room"), ("a\tb", "room"), ("a\x85b", "room"),  # MQTT/Mosquitto refuse control characters
    ("a\ufdd0b", "room"), ("a\uffffb", "room"),  # and Unicode's noncharacters
    ("chambre \U0001f431", "room"),  # MicroPython's json reads the \u escapes of an emoji as two halves
    ("é" * 33, "room"),  # 66 bytes: more than the 64 a room may take
]
KIT_ONLY = ["", "dashboard", "a:b", " salon", "salon ", ".", ".."]


def test_make_node_refuses_a_room_that_cannot_work(tmp_path, capsys):
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost")
    capsys.readouterr()
    for room in [r for r, _ in BAD_ROOMS] + KIT_ONLY:
        assert kit.main(["node", "--out", out, "--room", room]) == 1, room
        said = capsys.readouterr()
        lines = said.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("make node: ROOM: "), (room, said)
        assert not said.out
    assert not os.path.exists(os.path.join(out, "nodes")) or os.listdir(os.path.join(out, "nodes")) == []
    with open(os.path.join(out, "kit.json")) as f:
        assert json.load(f)["nodes"] == []
    assert "\x00" not in open(os.path.join(out, "acl"), encoding="utf-8").read()

    # Two rooms Home Assistant would see under one id: the second is refused, naming the first.
    kit.add_node(out, ROOM)
    with pytest.raises(Failure, match=r"^ROOM: .*maison_sejour.*séjour"):
        kit.add_node(out, "sejour")


def _base():
    return {"room": "salon", "wifi": {"ssid": "maison"},
            "mqtt": {"host": "pi", "tls": False, "user": "salon", "password": "x"}}


BAD_CONFIGS = [(dict(_base(), room=r), key) for r, key in BAD_ROOMS] + [
    (dict(_base(), mqtt=dict(_base()["mqtt"], user="sal\x00on")), "mqtt.user"),
    (dict(_base(), mqtt=dict(_base()["mqtt"], user="x\U0001f431")), "mqtt.user"),
    (dict(_base(), mqtt=dict(_base()["mqtt"], password="mot2passé\x00")), "mqtt.password"),
    (dict(_base(), mqtt=dict(_base()["mqtt"], password="mot2passé\U0001f431")), "mqtt.password"),
    (dict(_base(), mqtt=dict(_base()["mqtt"], client_id="a\x1fb")), "mqtt.client_id"),
]


def test_config_refuses_names_that_cannot_work_in_both_runtimes():
    py = []
    for raw, key in BAD_CONFIGS:
        with pytest.raises(ValueError) as e:
            node_config.check(raw, "esp32")
        text = str(e.value)
        assert text.startswith("config: %s: " % key) and "\n" not in text, text
        assert "mot2passé" not in text
        py.append(text)
    vm = _vm("import json\nfrom node import config\nfor raw, key in json.loads(%r):\n"
             "    try:\n        config.check(raw, 'esp32')\n        print(json.dumps('accepted'))\n"
             "    except ValueError as e:\n        print(json.dumps(str(e)))\n" % json.dumps(BAD_CONFIGS))
    # The same key and reason; the value itself is shown by each runtime's json.dumps.
    assert [json.loads(line).split(", got ")[0] for line in out_lines(vm)] == [t.split(", got ")[0] for t in py]

    # What a French household writes is taken, and the same on both runtimes.
    good = dict(_base(), room="Salle à manger", mqtt=dict(_base()["mqtt"], user="séjour", password=PASSWORD))
    assert node_config.check(good, "esp32")["room"] == "Salle à manger"
    assert json.loads(_vm("import json\nfrom node import config\nprint(json.dumps(config.check(json.loads(%r), "
                          "'esp32')['mqtt']['user']))" % json.dumps(good))) == "séjour"


def test_checking_a_config_interns_nothing_that_depends_on_its_secrets():
    # MicroPython interns each 1-character string that iterating a str yields. A check that
    # did so on the password left the node with a password-dependent number of names in its
    # qstr pools, and one pool more (7 KB on the 64-bit VM) before the first handshake in about
    # one run in four: the tight-heap test of test_memory.py failed at random.
    script = ("import json, micropython\nfrom node import config\n"
              "config.check(json.loads(%r), 'esp32')\nmicropython.qstr_info()\n")
    counts = []
    for pw in ("aaaaaaaaaaaaaaaaaaaaaaaa", "Zq9!xW#k2@Lp$7vR%m3^Tn8&", "éèêëàâîïôûüç€£¥§¶µ±×÷ø"):
        room = "".join(c for c in pw if c not in "/+#")[:12]
        raw = dict(_base(), room=room, mqtt=dict(_base()["mqtt"], password=pw, user=pw[::-1]))
        out = _vm(script % json.dumps(raw))
        counts.append(re.search(r"n_qstr=(\d+)", out).group(1))
    assert len(set(counts)) == 1, counts


def out_lines(text):
    return [line for line in text.split("\n") if line.strip()]  # (MicroPython's json leaves U+0085 raw)


# --- make doctor --------------------------------------------------------------------------------
def _doctor(path):
    r = subprocess.run([sys.executable, "-m", "nodekit.doctor", "--config", str(path)], cwd=REPO,
                       capture_output=True, text=True, encoding="utf-8", timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_doctor_logs_in_with_an_accented_account(broker):
    path = accented_node(broker, homeassistant=True)
    rc, out = _doctor(path)
    assert rc == 0, out
    assert "ok    login: account 'séjour' accepted" in out
    # The topics the node will really use, Home Assistant's discovery ones included.
    assert re.search(r"ok    publish: .*maison/séjour/valeur.*homeassistant/sensor/maison_sejour/valeur/config", out), out
    assert PASSWORD not in out

    # A kit from before this rule wrote the discovery ACL with CPython's isalpha() id: doctor says so.
    acl = os.path.join(broker.out, "acl")
    with open(acl, encoding="utf-8") as f:
        text = f.read()
    with open(acl, "w", encoding="utf-8") as f:
        f.write(text.replace("homeassistant/sensor/maison_sejour/", "homeassistant/sensor/maison_séjour/"))
    broker.mosq.reload()
    time.sleep(1)
    rc, out = _doctor(path)
    assert rc == 1 and re.search(r"FAIL  publish: .*homeassistant/sensor/maison_sejour/valeur/config", out), out
    assert "its acl needs `topic write homeassistant/sensor/maison_sejour/valeur/config` under `user séjour`" in out, out

    # A wrong password fails visibly, at the login, without showing either password.
    with open(path) as f:
        cfg = json.load(f)
    cfg["mqtt"]["password"] = "mot2passe"
    with open(path, "w") as f:
        json.dump(cfg, f)
    rc, out = _doctor(path)
    assert rc == 1 and "FAIL  login: the broker refused account 'séjour'" in out, out
    assert PASSWORD not in out and "mot2passe" not in out
