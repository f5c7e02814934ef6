"""A node lives by each port's Wi-Fi rules and no Wi-Fi error ends its loop.

The node lives by each port's Wi-Fi rules, against a real broker: the ESP8266's factory
access point goes off, a .local broker name gets advice where it cannot resolve, the ESP32's
driver rejoins by itself after a drop, and no Wi-Fi error ends the loop."""
import json
import re

import pytest

from nodekit import doctor
from nodekit.sim import simnode
from node import config

LOCAL_ADVICE = ("broker host 'raspberrypi.local' cannot resolve on an ESP8266 (no mDNS): put the Pi's "
                "address in mqtt.host, e.g. 192.168.1.10")


def test_node_starts_on_an_esp8266_and_switches_its_factory_access_point_off(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(period_s=0.3), runtime, board="huzzah")
    node.wait_log(r"wifi  the board's own access point switched off")
    node.wait_log(r"mqtt  connected to ")
    assert w.next("maison/salon/valeur")
    # The SDK keeps the mode in flash (wifi_opmode): station only, the access point off.
    assert (node.sim.board_dir / "wifi_opmode").read_text() == "1"
    assert node.alive() and "Traceback" not in node.log()


def test_wifi_ap_true_keeps_the_access_point(broker, start_node, runtime):
    node = start_node(broker.node_config(wifi__ap=True), runtime, board="esp8266")
    node.wait_log(r"mqtt  connected to ")
    assert (node.sim.board_dir / "wifi_opmode").read_text() == "3"  # station and access point
    assert "access point switched off" not in node.log()


def test_wifi_ap_must_be_true_or_false():
    with pytest.raises(ValueError) as e:
        config.check({"room": "c", "wifi": {"ssid": "x", "ap": "yes"}, "mqtt": {"host": "pi", "tls": False}})
    assert str(e.value) == ('config: wifi.ap: expected true (keep the board\'s own access point on) or false '
                            '(switch it off, the default), got "yes"')
    cfg = config.check({"room": "c", "wifi": {"ssid": "x"}, "mqtt": {"host": "pi", "tls": False}})
    assert cfg["wifi"]["ap"] is False


def test_esp32_wifi_drop_lets_the_driver_rejoin(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(period_s=0.3, payload="json"), runtime, board="esp32")
    w.next("maison/salon/valeur")
    simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=False)
    node.wait_log(r"wifi  link to 'maison' lost \(.*\); the Wi-Fi driver is rejoining")
    node.wait_log(r"wifi  network not found \('maison'\); the Wi-Fi driver keeps trying")
    node.wait_log(r"read  .* kept \(2 waiting\)")
    simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=True)
    node.wait_log(r"(?s)keeps trying.*wifi  connected to 'maison'", timeout=40)
    node.wait_log(r"(?s)keeps trying.*mqtt  connected to ", timeout=40)
    seq = json.loads(w.next("maison/salon/valeur", timeout=30)[1])["seq"]
    later = json.loads(w.next("maison/salon/valeur", where=lambda m: json.loads(m[1])["seq"] > seq + 3)[1])
    # Nothing lost: the readings kept while the driver rejoined arrived with the rest.
    seqs = {json.loads(m[1])["seq"] for m in w.seen if m[0] == "maison/salon/valeur"}
    assert set(range(min(seqs), later["seq"] + 1)) <= seqs, sorted(seqs)
    log = node.log()
    # The node never called connect() over the driver's own rejoin.
    assert "Wifi Internal Error" not in log and "Traceback" not in log
    assert len(re.findall(r"wifi  joining 'maison'", log)) == 1
    assert node.alive()


@pytest.mark.parametrize("board,error", [("esp32", "Wifi Internal Error"), ("esp8266", "Cannot connect to AP")])
def test_a_wifi_error_is_logged_and_retried(broker, start_node, runtime, tmp_path, board, error):
    w = broker.witness("maison/salon/valeur")
    cfg = broker.node_config(period_s=0.3, backoff_max_s=1)
    hw = tmp_path / "board0"  # the board start_node makes first
    hw.mkdir()
    (hw / "wifi_error").write_text("connect")  # connect() raises what the port raises for it
    node = start_node(cfg, runtime, board=board)
    assert node.sim.board_dir == hw
    node.wait_log(r"wifi  Wi-Fi error: %s; trying again in \d+\.\d s" % error)
    node.wait_log(r"(?s)Wi-Fi error.*wifi  joining 'maison'.*Wi-Fi error")  # tried again, still failing
    assert node.alive()
    node.sim.board_dir.joinpath("wifi_error").unlink()
    node.wait_log(r"wifi  connected to 'maison'", timeout=30)
    assert w.next("maison/salon/valeur", timeout=30)
    assert node.alive() and "Traceback" not in node.log()


def test_local_broker_name_gets_advice_on_an_esp8266_only(broker, start_node, runtime):
    cfg = broker.node_config(mqtt__host="raspberrypi.local", ntp=False)
    node = start_node(cfg, runtime, board="esp8266")
    node.wait_log(re.escape("mqtt  " + LOCAL_ADVICE))
    node.wait_log(r"mqtt  cannot resolve broker host name 'raspberrypi.local'")
    assert node.log().count(LOCAL_ADVICE) == 1  # once, at start, not in the loop
    assert node.alive()
    # An ESP32 asks mDNS for .local names (MICROPY_HW_ENABLE_MDNS_QUERIES): no such advice.
    other = start_node(cfg, runtime, board="esp32")
    other.wait_log(r"mqtt  (cannot resolve broker host name|connected to)")
    assert "no mDNS" not in other.log()


def test_doctor_gives_the_same_advice_for_an_esp8266(tmp_path, capsys):
    for board, advice in (("huzzah", True), ("esp32", False)):
        path = tmp_path / ("%s.json" % board)
        path.write_text(json.dumps({"room": "salon", "board": board, "wifi": {"ssid": "x"},
                                    "mqtt": {"host": "raspberrypi.local", "tls": False}}))
        doctor.main(["--config", str(path)])
        out = capsys.readouterr().out
        assert (("warn  name: " + LOCAL_ADVICE) in out) == advice, (board, out)
