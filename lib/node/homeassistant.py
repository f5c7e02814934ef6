# Home Assistant MQTT discovery ("homeassistant": true in config.json): retained configs
# that make the node's reading a sensor and its LED a switch, with no YAML. Imported only
# when a new session starts, then unloaded: the texts are big for an ESP8266.
import json
import sys

from node import __version__

PREFIX = "homeassistant"


def object_id(room):
    # Home Assistant accepts [a-zA-Z0-9_-] in a discovery topic; the kit's ACL uses the same rule.
    return "maison_" + "".join(c if c.isalpha() or c.isdigit() or c in "_-" else "_" for c in room)


def configs(cfg, uid):
    """[(topic, payload)] for the sensor and the switch."""
    room = cfg["room"]
    base = "maison/" + room
    node = object_id(room)
    device = {"identifiers": ["maison-" + uid], "name": "maison " + room,
              "model": cfg["board"] or sys.platform, "sw_version": __version__}
    common = {"availability_topic": base + "/status", "payload_available": "online",
              "payload_not_available": "offline", "device": device}
    sensor = dict(common, name="valeur", unique_id=uid + "_valeur", state_topic=base + "/valeur",
                  state_class="measurement")
    if cfg["payload"] == "json":
        sensor["value_template"] = "{{ value_json.value }}"
    if cfg["sensor"]["type"] == "sim":  # the simulated sensor gives a room temperature
        sensor.update(device_class="temperature", unit_of_measurement="°C")
    switch = dict(common, name="LED", unique_id=uid + "_led", command_topic=base + "/led/set",
                  state_topic=base + "/led", payload_on="ON", payload_off="OFF", state_on="1",
                  state_off="0", qos=1)
    return [("%s/sensor/%s/valeur/config" % (PREFIX, node), json.dumps(sensor)),
            ("%s/switch/%s/led/config" % (PREFIX, node), json.dumps(switch))]
