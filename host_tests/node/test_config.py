"""A mistake in config.json stops the node with one line naming the key, the same on both runtimes.

config.json validation: every mistake is one line naming the key; the MicroPython
VM gives the same answers as CPython (the oracle)."""
import copy
import json
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from nodekit import REPO
from nodekit.sim import simnode
from node import config

EXAMPLE = json.loads((REPO / "config.example.json").read_text())


def mutate(changes=None, drop=None):
    """The example config with dotted keys changed or dropped."""
    cfg = copy.deepcopy(EXAMPLE)
    for dotted, value in (changes or {}).items():
        d = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    if drop:
        d = cfg
        keys = drop.split(".")
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return cfg


def check(changes=None, drop=None):
    return config.check(mutate(changes, drop))


def test_example_is_complete_and_valid():
    cfg = check()
    assert cfg["room"] == "salon" and cfg["mqtt"]["user"] == "sondes"
    assert cfg["period_ms"] == 5000 and cfg["mqtt"]["keepalive"] == 60
    assert cfg["mqtt"]["tls"] == {"ca": "ca.der", "cert": None, "key": None}
    assert cfg["ntp"] == {"host": "raspberrypi.local"}


def test_defaults():
    cfg = config.check({"room": "cuisine", "wifi": {"ssid": "x"},
                        "mqtt": {"host": "pi", "tls": {"ca": "ca.pem"}}})
    assert cfg["period_ms"] == 5000
    assert cfg["mqtt"]["port"] == 8883 and cfg["mqtt"]["keepalive"] == 60
    assert cfg["mqtt"]["client_id"] is None
    assert cfg["led"] == {"pin": 2, "active_low": True}
    assert cfg["sensor"] == {"type": "adc", "pin": 0, "unit": None, "scale": 1, "offset": 0}
    assert cfg["ntp"] == {"host": "pi"}  # the broker's host is the default time server
    plain = config.check({"room": "c", "wifi": {"ssid": "x"}, "mqtt": {"host": "pi", "tls": False}})
    assert plain["mqtt"]["port"] == 1883 and plain["mqtt"]["tls"] is None


BAD = [
    ({}, "room", "config: room: expected a text, missing"),
    ({"room": "salon/cuisine"}, None, 'config: room: expected a single topic level (no \'/\', \'+\' or \'#\'), got "salon/cuisine"'),
    ({"room": 5}, None, "config: room: expected a non-empty text, got 5"),
    ({}, "wifi", "config: wifi: expected an object {...}, got null"),
    ({"wifi.password": 1234}, None, "config: wifi.password: expected a non-empty text, got a int"),
    ({}, "mqtt.host", "config: mqtt.host: expected a text, missing"),
    ({"mqtt.port": 70000}, None, "config: mqtt.port: expected an integer 1..65535, got 70000"),
    ({"mqtt.port": True}, None, "config: mqtt.port: expected an integer 1..65535, got true"),
    ({"mqtt.keepalive": 0}, None, "config: mqtt.keepalive: expected an integer 1..65535, got 0"),
    ({}, "mqtt.tls", 'config: mqtt.tls: expected {"ca": "ca.der"} or false (plaintext must be asked for), missing'),
    ({"mqtt.tls": True}, None, "config: mqtt.tls: expected an object {...}, got true"),
    ({"mqtt.tls.cert": "c.der"}, None, "config: mqtt.tls.cert/key: expected both a client certificate and its key, or neither, missing"),
    ({"mqtt.password": "secret-value"}, "mqtt.user", "config: mqtt.user: expected a user name to go with mqtt.password, missing"),
    ({"period_s": 0}, None, "config: period_s: expected a number of seconds 0.05..86400, got 0"),
    ({"led.active_low": "yes"}, None, 'config: led.active_low: expected true or false, got "yes"'),
    ({"sensor.type": "bme280"}, None, 'config: sensor.type: expected "adc" or "sim" or "dht22" or "dht11" or "ds18b20", got "bme280"'),
    ({"sensor.unit": 'deg"C'}, None, 'config: sensor.unit: expected a short text (at most 8 characters, no quotes), e.g. "°C" or "%", or null, got "deg\\"C"'),
    ({"sensor.unit": "millivolts"}, None, 'config: sensor.unit: expected a short text (at most 8 characters, no quotes), e.g. "°C" or "%", or null, got "millivolts"'),
    ({"sensor.scale": "0.1"}, None, 'config: sensor.scale: expected a number (reading = raw * scale + offset), got "0.1"'),
    ({"perod_s": 5}, None, "config: perod_s: unknown key (known: room, board, wifi, mqtt, period_s, led, sensor, ntp, buffer, payload, qos, backoff_max_s, stats_s, watchdog_s, homeassistant)"),
    ({"mqtt.tls.capath": "x"}, None, "config: mqtt.tls.capath: unknown key (known: ca, cert, key)"),
]


@pytest.mark.parametrize("changes, drop, message", BAD)
def test_bad_config_names_the_key(changes, drop, message):
    with pytest.raises(ValueError) as e:
        check(changes, drop)
    assert str(e.value) == message


def test_secrets_are_never_echoed():
    for bad in ({"wifi.password": ["s3cret-w"]}, {"mqtt.password": {"s3cret-m": 1}}):
        with pytest.raises(ValueError) as e:
            check(bad)
        assert "s3cret" not in str(e.value)


def test_load_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(ValueError, match=r"config: cannot read .*nope.json"):
        config.load(str(tmp_path / "nope.json"))
    (tmp_path / "c.json").write_text('{"room": "salon",')
    with pytest.raises(ValueError, match=r"config: .*c.json is not valid JSON"):
        config.load(str(tmp_path / "c.json"))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["room", "wifi", "mqtt", "period_s", "led", "sensor", "ntp", "x"]),
                       json_values, max_size=8))
def test_any_json_gives_a_config_or_one_clear_line(raw):
    try:
        cfg = config.check(raw)
    except ValueError as e:
        text = str(e)
        assert text.startswith("config: ") and "\n" not in text
    else:
        assert isinstance(cfg["room"], str)


def test_micropython_vm_agrees_with_cpython(tmp_path):
    mp = simnode.micropython_path()
    if not mp:
        pytest.skip("the MicroPython VM is not available here")
    script = tmp_path / "check.py"
    script.write_text(
        "import sys, json\nsys.path.insert(0, %r)\nfrom node import config\n"
        "for line in open(%r):\n"
        "    try:\n        config.check(json.loads(line))\n        print('ok')\n"
        "    except ValueError as e:\n        print(e)\n" % (str(REPO / "lib"), str(tmp_path / "cases.jsonl")))
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(mutate(c, d)) + "\n" for c, d, _ in BAD))
    out = subprocess.run([mp, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [message for _, _, message in BAD]


def test_new_keys_board_qos_homeassistant():
    cfg = check({"qos": 0, "board": "huzzah", "homeassistant": True})
    assert (cfg["qos"], cfg["board"], cfg["homeassistant"]) == (0, "huzzah", True)
    assert check({})["qos"] == 1 and check({})["homeassistant"] is False
    with pytest.raises(ValueError, match=r"config: qos: expected 0 \(fire and forget\) or 1"):
        check({"qos": 2})
    with pytest.raises(ValueError, match="config: homeassistant: expected true or false"):
        check({"homeassistant": "yes"})
