"""A node publishes a reading every period and switches its LED on command, as the tutorials show.

The node end to end, under CPython and the MicroPython VM, against a real
Mosquitto running the project's broker kit, seen by an independent client."""
import json
import re
import time

import pytest

from conftest import DELETE
from nodekit.broker import certs


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture(params=["esp8266", "esp32"])
def board(request):
    """The two ports' profiles, for the node's core stories (the rest default to the ESP8266)."""
    return request.param


def test_readings_arrive(broker, start_node, runtime, board):
    w = broker.witness("maison/+/valeur", "maison/salon/status")
    node = start_node(broker.node_config(period_s=0.5), runtime, board=board)
    values = [float(w.next("maison/salon/valeur")[1]) for _ in range(3)]
    assert all(15 < v < 30 for v in values), values  # the sim sensor: a room temperature
    assert w.next("maison/salon/status", where=lambda m: m[1] == b"online")
    node.wait_log(r"mqtt  connected to localhost:\d+ as salon ")
    assert "Traceback" not in node.log()




def test_an_adc_reading_in_the_configs_unit(broker, start_node, runtime):
    # A light sensor on A0 read as a percentage: reading = raw * scale + offset, "%" in the stats.
    w = broker.witness("maison/salon/valeur", "maison/salon/stats")
    cfg = broker.node_config(period_s=0.3, sensor={"type": "adc", "pin": 0, "unit": "%", "scale": 100 / 65535})
    node = start_node(cfg, runtime)
    (node.sim.board_dir / "adc0").write_text("16384")
    assert w.next("maison/salon/valeur", where=lambda m: m[1] == b"25.00", timeout=30)
    stats = json.loads(w.next("maison/salon/stats", timeout=30)[1])
    assert stats["unit"] == "%"
    assert "Traceback" not in node.log()


@pytest.mark.parametrize("topic", ["ctrlled", "maison/salon/led/set"])
def test_commands_drive_the_led(broker, start_node, runtime, topic, board):
    w = broker.witness("maison/salon/led")
    node = start_node(broker.node_config(period_s=60), runtime, board=board)
    # Once per connect, the node publishes its LED state, retained: off at power-on.
    assert w.next("maison/salon/led")[1] == b"0"
    assert node.led_on() is False

    def command(payload, expect):
        w.publish(topic, payload)
        msg = w.next("maison/salon/led")
        assert msg[1] == (b"1" if expect else b"0"), (payload, msg)
        assert node.led_on() is expect, payload  # the pin agrees with the echo

    command(b"1", True)
    command(b"0", False)
    command(b"toggle", True)
    command(b"ON", True)
    command(b" Off\n", False)
    command(b"true", True)
    command(b"TOGGLE", False)
    # Garbage: logged as ignored, LED unchanged, node still running and still obeying.
    w.publish(topic, b"allume")
    node.wait_log(r"cmd   ignored 6 bytes on %s" % re.escape(topic))
    time.sleep(1.1)  # "ignored" lines are rate-limited to one a second
    w.publish(topic, b"\xff\xfe\x00")
    node.wait_log(r"cmd   ignored 3 bytes on %s" % re.escape(topic))
    assert node.led_on() is False and node.alive()
    command(b"1", True)
    # A new subscriber sees the retained state the node last published.
    late = broker.witness("maison/salon/led")
    msg = late.next("maison/salon/led")
    assert msg[1] == b"1" and msg[2]  # retained
    assert "Traceback" not in node.log()


def test_wrong_password_is_reported_and_not_fatal(broker, start_node, runtime):
    node = start_node(broker.node_config(mqtt__password="not-the-password"), runtime)
    node.wait_log(r"mqtt  broker refused the connection: .*(not authorised|bad user name or password)")
    node.wait_log(r"mqtt  next attempt in")
    assert node.alive() and "Traceback" not in node.log()
    assert "not-the-password" not in node.log()


def test_wrong_ca_is_reported(broker, start_node, runtime, tmp_path):
    # mbedTLS verifies (ESP32); axTLS cannot: test_board_tls.py has the ESP8266's side
    cfg = broker.node_config()
    other = certs.make_ca("Another CA", certs.new_key())
    certs.write_cert(cfg.parent / "ca.der", other, der=True)
    node = start_node(cfg, runtime, board="esp32")
    node.wait_log(r"mqtt  broker's certificate not trusted")
    assert node.alive() and "Traceback" not in node.log()


def test_host_name_missing_from_certificate_is_reported(broker, start_node, runtime):
    # A certificate naming "localhost" only, reached as 127.0.0.1: the seeds' "Hostname mismatch".
    broker.name_only("localhost")
    node = start_node(broker.node_config(mqtt__host="127.0.0.1"), runtime, board="esp32")
    m = node.wait_log(r"mqtt  broker's certificate not trusted: .*'127\.0\.0\.1' not in it")
    assert node.alive() and "Traceback" not in node.log()


def test_client_certificate(make_broker, start_node, runtime):
    b = make_broker(client_certs=True)
    cfg = b.node_config()
    w = b.witness("maison/salon/valeur")
    start_node(cfg, runtime)
    assert w.next("maison/salon/valeur")


def test_plaintext_only_when_asked_and_with_a_warning(broker, start_node, runtime):
    cfg = broker.node_config(mqtt__tls=False, mqtt__port=broker.local_port, period_s=0.5)
    w = broker.witness("maison/salon/valeur")
    node = start_node(cfg, runtime)
    node.wait_log(r"WARNING: plaintext MQTT")
    assert w.next("maison/salon/valeur")


@pytest.mark.parametrize("change, line", [
    ({"wifi__ssid": DELETE}, r"config: wifi.ssid: expected a text, missing"),
    ({"period_s": "5"}, r'config: period_s: expected a number of seconds 0.05..86400, got "5"'),
    ({"mqtt__tls": DELETE}, r"config: mqtt.tls: expected .* or false \(plaintext must be asked for\), missing"),
    ({"mqtt__port": "8883"}, r'config: mqtt.port: expected an integer 1..65535, got "8883"'),
    ({"sensor__type": "bme280"}, r'config: sensor.type: expected "adc" or "sim" or "dht22" or "dht11" or "ds18b20", got "bme280"'),
    ({"mqtt__tls__ca": "nowhere.der"}, r"config: mqtt.tls.ca: cannot read file nowhere.der"),
])
def test_bad_config_gives_one_line_and_leaves_the_repl(broker, start_node, runtime, change, line):
    cfg = broker.node_config(**change)
    node = start_node(cfg, runtime)
    wait_for(lambda: not node.alive(), what="the node to stop")
    assert node.sim.proc.returncode == 3  # main.py returned: a board shows its REPL
    node.wait_log(line)
    assert "Traceback" not in node.log()
