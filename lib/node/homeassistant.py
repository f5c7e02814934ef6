# Home Assistant MQTT discovery ("homeassistant": true in config.json): retained configs
# that make the node's reading a sensor and its LED a switch, with no YAML. Imported only
# when a new session starts, then unloaded: the texts are big for an ESP8266.
import sys
from json import dumps

from node import __version__, topics

PREFIX = "homeassistant"


# U+00C0..U+00FF (UTF-8 C3 80..C3 BF) without their accents; '_' for × and ÷.
_LATIN = b"AAAAAAACEEEEIIIIDNOOOOO_OUUUUYTsaaaaaaaceeeeiiiidnooooo_ouuuuyty"


def object_id(room):
    """The room as Home Assistant's discovery topics take it ([a-zA-Z0-9_-]): the kit's ACL
    and its check for two rooms sharing an id use this too. Worked on the UTF-8 bytes, as
    MicroPython's isalpha() knows ASCII only: séjour is maison_sejour on both runtimes."""
    b = room.encode()
    out = bytearray(b"maison_")
    for i, c in enumerate(b):
        if c < 0x80:
            out.append(c if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"_-" else 95)
        elif c >= 0xC0:  # a character starts here; its other bytes (0x80..0xBF) add nothing
            out.append(_LATIN[b[i + 1] - 0x80] if c == 0xC3 else 95)
    return out.decode()


def configs(cfg, uid):
    """[(topic, payload)] for the sensor and the switch."""
    room = cfg["room"]
    device = {"identifiers": ["maison-" + uid], "name": "maison " + room,
              "model": cfg["board"] or sys.platform, "sw_version": __version__}
    common = {"availability_topic": topics.STATUS % room, "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    as_json = cfg["payload"] == "json"
    kind = cfg["sensor"]["type"]
    second = kind[:3] == "dht"  # a DHT's humidity, on its own topic
    where = config_topics(room, second)
    out = [(where[0], _sensor(common, "valeur", topics.VALUE, uid, room, as_json, None if kind == "adc" else "temperature",
                              cfg["sensor"].get("unit")))]
    if second:
        out.append((where[1], _sensor(common, "humidite", topics.SECOND, uid, room, as_json, "humidity", "%")))
    switch = dict(common, name="LED", unique_id=uid + "_led", command_topic=topics.LED_SET % room,
                  state_topic=topics.LED % room, payload_on="ON", payload_off="OFF", state_on="1",
                  state_off="0", qos=1)
    out.append((where[-1], dumps(switch)))
    return out


def config_topics(room, second=True):
    """The discovery topics the node writes (its sensor, a DHT's humidity, its switch): the
    kit's ACL gives each node exactly these."""
    node = object_id(room)
    out = ["%s/sensor/%s/valeur/config" % (PREFIX, node)]
    if second:
        out.append("%s/sensor/%s/humidite/config" % (PREFIX, node))
    out.append("%s/switch/%s/led/config" % (PREFIX, node))
    return out


def _sensor(common, name, topic, uid, room, as_json, device_class, unit):
    s = dict(common, name=name, unique_id=uid + "_" + name, state_topic=topic % room,
             state_class="measurement")
    if as_json:
        s["value_template"] = "{{ value_json.value }}"
    if device_class:  # the simulated sensor and the probes give a temperature (a DHT a humidity too)
        s["device_class"] = device_class
    if unit:
        s["unit_of_measurement"] = unit
    return dumps(s)
