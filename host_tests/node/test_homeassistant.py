"""A Home Assistant finds the node's sensor and switch by itself and drives the LED.

Home Assistant MQTT discovery ("homeassistant": true): the retained configs a Home Assistant
reads, checked against the keys its documentation lists, the topics the node really uses, and
the switch driven the way Home Assistant drives it (ON/OFF on the command topic)."""
import json
import time

# From https://www.home-assistant.io/integrations/sensor.mqtt/ and .../switch.mqtt/ (Configuration
# Variables) and https://www.home-assistant.io/integrations/mqtt/#discovery-messages (device).
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "enabled_by_default", "encoding", "entity_category", "icon", "json_attributes_template",
          "json_attributes_topic", "name", "object_id", "default_entity_id", "payload_available",
          "payload_not_available", "qos", "unique_id", "value_template", "platform", "entity_picture"}
SENSOR = COMMON | {"device_class", "expire_after", "force_update", "last_reset_value_template",
                   "options", "state_class", "state_topic", "suggested_display_precision",
                   "unit_of_measurement"}
SWITCH = COMMON | {"command_template", "command_topic", "device_class", "optimistic", "payload_off",
                   "payload_on", "retain", "state_off", "state_on", "state_topic"}
DEVICE = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
          "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}


def ha_witness(broker, *topics):
    """A client with the kit's Home Assistant account, as Home Assistant's MQTT integration logs in."""
    return broker.witness(*topics, user=broker.homeassistant["user"], password=broker.homeassistant["password"])


def test_the_node_appears_in_home_assistant(broker, start_node, runtime):
    w = ha_witness(broker, "homeassistant/#", "maison/#")
    node = start_node(broker.node_config(homeassistant=True, payload="json", period_s=0.5), runtime)
    node.wait_log("Home Assistant discovery sent")
    s_raw = w.next("homeassistant/sensor/maison_salon/valeur/config")[1]
    t_raw = w.next("homeassistant/switch/maison_salon/led/config")[1]
    sensor, switch = json.loads(s_raw), json.loads(t_raw)
    assert set(sensor) <= SENSOR, set(sensor) - SENSOR
    assert set(switch) <= SWITCH, set(switch) - SWITCH
    for c in (sensor, switch):
        assert set(c["device"]) <= DEVICE
        uid = node.sim.board_dir.joinpath("unique_id").read_text()
        assert c["device"]["identifiers"] == ["maison-" + uid]  # the board's own id
        assert c["availability_topic"] == "maison/salon/status"
    assert sensor["unique_id"] != switch["unique_id"]

    # The topics are the node's: a reading arrives where the sensor looks, and the
    # template Home Assistant applies to it (value_json.value) finds the number.
    reading = w.next(sensor["state_topic"])[1]
    assert isinstance(json.loads(reading)["value"], (int, float))
    status = w.next(sensor["availability_topic"])[1]
    assert status.decode() == sensor["payload_available"]

    # Home Assistant switches it: payload_on on the command topic, state_on comes back.
    for payload, state, on in (("payload_on", "state_on", True), ("payload_off", "state_off", False)):
        w.publish(switch["command_topic"], switch[payload])
        w.next(switch["state_topic"], where=lambda m: m[1] == switch[state].encode())
        deadline = time.monotonic() + 10
        while node.led_on() != on and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.led_on() == on


def test_without_the_key_nothing_is_announced(broker, start_node):
    w = ha_witness(broker, "homeassistant/#", "maison/salon/valeur")
    start_node(broker.node_config(period_s=0.5), "cpython")
    w.next("maison/salon/valeur")
    w.next("maison/salon/valeur")
    assert not [m for m in w.seen if m[0].startswith("homeassistant/")]


def test_a_dht22_appears_as_a_temperature_and_a_humidity(broker, start_node):
    w = ha_witness(broker, "homeassistant/#", "maison/#")
    cfg = broker.node_config(homeassistant=True, period_s=2, sensor={"type": "dht22", "pin": 4},
                             board="esp32")
    node = start_node(cfg, "micropython")
    (node.sim.board_dir / "dht4").write_text("20.5 55.5")
    temp = json.loads(w.next("homeassistant/sensor/maison_salon/valeur/config")[1])
    hum = json.loads(w.next("homeassistant/sensor/maison_salon/humidite/config")[1])
    for c in (temp, hum):
        assert set(c) <= SENSOR, set(c) - SENSOR
    assert (temp["device_class"], temp["unit_of_measurement"]) == ("temperature", "°C")
    assert (hum["device_class"], hum["unit_of_measurement"]) == ("humidity", "%")
    assert temp["unique_id"] != hum["unique_id"]
    assert w.next(temp["state_topic"], where=lambda m: m[1] == b"20.50", timeout=30)
    assert w.next(hum["state_topic"], where=lambda m: m[1] == b"55.50", timeout=30)


def test_an_adc_in_its_unit_appears_with_it_and_no_device_class(broker, start_node):
    w = ha_witness(broker, "homeassistant/#")
    cfg = broker.node_config(homeassistant=True, period_s=1,
                             sensor={"type": "adc", "pin": 0, "unit": "lx", "scale": 0.1})
    start_node(cfg, "cpython")
    c = json.loads(w.next("homeassistant/sensor/maison_salon/valeur/config")[1])
    assert c["unit_of_measurement"] == "lx" and "device_class" not in c
    w.next("homeassistant/switch/maison_salon/led/config")  # the last config sent
    assert not [m for m in w.seen if "humidite" in m[0]]
