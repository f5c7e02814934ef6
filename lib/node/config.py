# Read config.json once at start, check every key, fill in the defaults.
# Any problem is a ValueError whose text names the key and what was expected;
# secrets are never echoed back.
import json

PROBES = ("dht22", "dht11", "ds18b20")  # wired to a data pin, read with the firmware's drivers (node/probes.py)
SENSORS = ("adc", "sim") + PROBES
_SECRET = ("wifi.password", "mqtt.password")
_REQUIRED = object()


def _fail(path, expected, value=_REQUIRED):
    if value is _REQUIRED:
        got = "missing"
    elif path in _SECRET:
        got = "got a " + type(value).__name__
    else:
        got = "got " + json.dumps(value)
    raise ValueError("config: %s: expected %s, %s" % (path, expected, got))


def _section(raw, path, known):
    if type(raw) is not dict:
        _fail(path, "an object {...}", raw)
    for k in raw:
        if k not in known:
            raise ValueError("config: %s%s: unknown key (known: %s)"
                             % (path + "." if path else "", k, ", ".join(known)))
    return raw


def _str(sec, key, path, default=_REQUIRED):
    v = sec.get(key)
    if v is None:
        if default is _REQUIRED:
            _fail(path, "a text")
        return default
    if type(v) is not str or not v:
        _fail(path, "a non-empty text", v)
    return v


def _int(sec, key, path, lo, hi, default=_REQUIRED):
    v = sec.get(key)
    if v is None:
        if default is _REQUIRED:
            _fail(path, "an integer %d..%d" % (lo, hi))
        return default
    if type(v) is not int or not lo <= v <= hi:
        _fail(path, "an integer %d..%d" % (lo, hi), v)
    return v


def _bool(sec, key, path, default):
    v = sec.get(key)
    if v is None:
        return default
    if type(v) is not bool:
        _fail(path, "true or false", v)
    return v


ROOM_MAX = 64  # bytes of UTF-8: the kit puts the room in a client certificate's CN (64 at most)


def wire(path, v, limit=65535):
    """Refuse a text that cannot go on the wire as UTF-8 (a topic, the client id, the user
    name, the password) the same way on both runtimes."""
    # Read as UTF-8 bytes, never character by character: MicroPython interns each 1-character
    # string a str yields (py/objstr.c), so a scan of the password would grow the qstr pool
    # by a number that depends on the password. (surrogatepass: CPython's encode() refuses
    # the surrogate halves checked below; MicroPython ignores the argument.)
    b = v.encode("utf-8", "surrogatepass")
    i, n = 0, len(b)
    while i < n:
        o = b[i]
        if o < 0x80:
            i += 1
        elif o < 0xE0:
            o = (o & 0x1F) << 6 | b[i + 1] & 0x3F
            i += 2
        elif o < 0xF0:
            o = (o & 0x0F) << 12 | (b[i + 1] & 0x3F) << 6 | b[i + 2] & 0x3F
            i += 3
        else:
            o = 0x10000
            i += 4
        # Mosquitto closes the connection on these (lib/utf8_mosq.c), MQTT forbids NUL.
        if o < 32 or 127 <= o < 160 or 0xFDD0 <= o <= 0xFDEF or o & 0xFFFE == 0xFFFE:
            _fail(path, "no control character (MQTT brokers refuse them)", v)
        # MicroPython's json turns the \u escapes of one emoji into two halves, not UTF-8.
        if 0xD800 <= o < 0xE000 or o > 0xFFFF:
            _fail(path, "characters up to U+FFFF (no emoji: MicroPython's json splits them)", v)
    if n > limit:
        _fail(path, "at most %d bytes of UTF-8" % limit, v)
    return v


def check_room(room):
    """The room as a topic level (maison/<room>/valeur); the kit checks with this too."""
    if "/" in room or "+" in room or "#" in room:
        _fail("room", "a single topic level (no '/', '+' or '#')", room)
    return wire("room", room, ROOM_MAX)


def check(raw, platform=None):
    """Return a checked copy of the config with defaults filled in. platform: the port whose
    rules apply ("esp8266", "esp32"); on a board, its own sys.platform."""
    if platform is None:
        import sys

        platform = sys.platform
    _section(raw, "", ("room", "board", "wifi", "mqtt", "period_s", "led", "sensor", "ntp",
                       "buffer", "payload", "qos", "backoff_max_s", "stats_s", "watchdog_s",
                       "homeassistant"))
    room = check_room(_str(raw, "room", "room"))

    wifi = _section(raw.get("wifi"), "wifi", ("ssid", "password", "ap"))
    # wifi.ap: the board's own access point (an ESP8266's is up out of the factory, with a
    # published key): switched off at start unless true.
    ap = wifi.get("ap", False)
    if type(ap) is not bool:
        _fail("wifi.ap", "true (keep the board's own access point on) or false (switch it off, "
              "the default)", ap)
    wifi = {"ssid": _str(wifi, "ssid", "wifi.ssid"),
            "password": _str(wifi, "password", "wifi.password", ""), "ap": ap}

    m = _section(raw.get("mqtt"), "mqtt",
                 ("host", "port", "user", "password", "tls", "client_id", "keepalive"))
    if "tls" not in m:
        _fail("mqtt.tls", '{"ca": "ca.der"} or false (plaintext must be asked for)')
    tls = m["tls"]
    if tls is False:
        tls = None
    else:
        _section(tls, "mqtt.tls", ("ca", "cert", "key"))
        tls = {"ca": _str(tls, "ca", "mqtt.tls.ca"),
               "cert": _str(tls, "cert", "mqtt.tls.cert", None),
               "key": _str(tls, "key", "mqtt.tls.key", None)}
        if (tls["cert"] is None) != (tls["key"] is None):
            _fail("mqtt.tls.cert/key", "both a client certificate and its key, or neither")
    mqtt = {"host": _str(m, "host", "mqtt.host"),
            "port": _int(m, "port", "mqtt.port", 1, 65535, 8883 if tls else 1883),
            "user": _str(m, "user", "mqtt.user", None),
            "password": _str(m, "password", "mqtt.password", None),
            "tls": tls,
            "client_id": _str(m, "client_id", "mqtt.client_id", None),
            # Mosquitto 2.0.12+ refuses keepalive 0 with a misleading "identifier rejected".
            "keepalive": _int(m, "keepalive", "mqtt.keepalive", 1, 65535, 60)}
    for k in ("user", "password", "client_id"):
        if mqtt[k] is not None:
            wire("mqtt." + k, mqtt[k])
    if mqtt["password"] is not None and mqtt["user"] is None:
        _fail("mqtt.user", "a user name to go with mqtt.password")

    period = raw.get("period_s", 5)
    if type(period) not in (int, float) or not 0.05 <= period <= 86400:
        _fail("period_s", "a number of seconds 0.05..86400", period)

    led = _section(raw.get("led", {}), "led", ("pin", "active_low"))
    led = {"pin": _int(led, "pin", "led.pin", 0, 255, 2),
           "active_low": _bool(led, "active_low", "led.active_low", True)}

    sensor = _section(raw.get("sensor", {}), "sensor", ("type", "pin", "unit", "scale", "offset"))
    kind = sensor.get("type", "adc")
    if kind not in SENSORS:
        _fail("sensor.type", " or ".join('"%s"' % s for s in SENSORS), kind)
    if kind in PROBES and "pin" not in sensor:
        _fail("sensor.pin", "the GPIO its data wire is on, for a %s" % kind)
    # Measured (README "Memory per board", make bench --sensor): with a DS18B20 (the frozen
    # onewire and ds18x20 in its heap) an ESP8266 has about 15.0 KB free at a TLS handshake,
    # where axTLS needs 16.5 KB (node/session.py): it could never connect. Said now, not as a
    # reset loop in the field. A DHT, read without its driver's classes, fits (17.0 KB).
    if kind == "ds18b20" and platform == "esp8266" and mqtt["tls"]:
        _fail("sensor.type", '"adc", "sim", "dht22" or "dht11" on an ESP8266 over TLS (a ds18b20\'s driver and '
              'a TLS handshake do not fit in its heap together; an ESP32 has room, or set mqtt.tls to false on a '
              'trusted network)', kind)
    # A DHT measures at most once per 2 s (DHT22) or 1 s (DHT11), its datasheets say; asked
    # sooner it answers its last measure again, or nothing.
    if kind[:3] == "dht" and period < (2 if kind == "dht22" else 1):
        _fail("period_s", "at least %d s for a %s" % (2 if kind == "dht22" else 1, kind), period)
    # What a reading is in: the simulated sensor and the probes give degrees; an ADC gives
    # 0..65535 unless scale and offset turn it into something (reading = raw * scale + offset).
    unit = sensor.get("unit", None if kind == "adc" else "°C")
    if unit is not None and (type(unit) is not str or not 0 < len(unit) <= 8
                             or any(o < 32 or o == 34 or o == 92 for o in unit.encode())):
        _fail("sensor.unit", 'a short text (at most 8 characters, no quotes), e.g. "°C" or "%", or null', unit)
    linear = []
    for key, default in (("scale", 1), ("offset", 0)):
        v = sensor.get(key, default)
        if type(v) not in (int, float):
            _fail("sensor." + key, "a number (reading = raw * scale + offset)", v)
        linear.append(v)
    sensor = {"type": kind, "pin": _int(sensor, "pin", "sensor.pin", 0, 255, 0), "unit": unit,
              "scale": linear[0], "offset": linear[1]}

    ntp = raw.get("ntp")
    if ntp is None:
        # The clock matters only to a TLS library that checks certificate dates: an ESP8266's
        # axTLS checks none (node/clock.py), so it asks no time server unless told to.
        ntp = False if platform == "esp8266" else {}
    if ntp is not False:
        ntp = _section(ntp, "ntp", ("host",))
        ntp = {"host": _str(ntp, "host", "ntp.host", mqtt["host"])}

    payload = raw.get("payload", "plain")
    if payload not in ("plain", "json"):
        _fail("payload", '"plain" or "json"', payload)

    qos = raw.get("qos", 1)
    if qos not in (0, 1) or type(qos) is bool:
        _fail("qos", "0 (fire and forget) or 1 (every reading acknowledged)", qos)

    return {"room": room, "wifi": wifi, "mqtt": mqtt, "period_ms": int(period * 1000),
            "led": led, "sensor": sensor, "ntp": ntp or None,
            # Readings kept while disconnected: 5 minutes' worth at the default period.
            # 8 bytes each (node/backlog.py; 10 with a DHT), allocated at start: bounded by the board's heap
            # (an ESP8266's 38 KB GC heap, ports/esp8266/main.c) rather than a MemoryError.
            "buffer": _int(raw, "buffer", "buffer", 1, 250 if platform == "esp8266" else 2500, 60),
            "payload": payload, "qos": qos,
            # The profile the PC tools wrote led/sensor from (firmware/boards.json); informational here.
            "board": _str(raw, "board", "board", None),
            "homeassistant": _bool(raw, "homeassistant", "homeassistant", False),
            "backoff_max_ms": 1000 * _int(raw, "backoff_max_s", "backoff_max_s", 1, 3600, 60),
            "stats_ms": 1000 * _int(raw, "stats_s", "stats_s", 1, 86400, 60),
            "watchdog_ms": 1000 * _watchdog_s(raw, platform)}


def _watchdog_s(raw, platform):
    # Every wait of the loop is bounded from it (node/session.py socket_timeout_s), so
    # any value the chip accepts works; 5 s is the only one an ESP8266 accepts.
    if platform == "esp8266":
        v = raw.get("watchdog_s", 5)
        if v != 5 or type(v) is not int:
            _fail("watchdog_s", "5: an ESP8266's watchdog is fixed at 5 s (machine.WDT takes no "
                  "other timeout there); leave the key out", v)
        return 5
    return _int(raw, "watchdog_s", "watchdog_s", 5, 3600, 5)


def load(path="config.json", platform=None):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ValueError("config: cannot read %s (copy config.example.json there and edit it)" % path)
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError("config: %s is not valid JSON" % path)
    return check(raw, platform)
