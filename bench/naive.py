# make bench's naive reference: a node written the way hobby sketches do it, with
# umqtt.simple directly: publish a reading, sleep(period), check_msg(). A command
# that arrives during the sleep waits for it to end: up to a whole period.
# MicroPython (runs on the simulated board, under CPython too); reads the node's
# config.json only to find the broker, where a sketch would hard-code it.
import json
import sys
import time

import machine
import network
from umqtt.simple import MQTTClient

with open("config.json") as f:
    cfg = json.load(f)
room = cfg["room"]
m = cfg["mqtt"]
period = cfg.get("period_s", 5)

sta = network.WLAN(network.STA_IF)
sta.active(True)
sta.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
while not sta.isconnected():
    time.sleep(0.1)

led = machine.Pin(cfg.get("led", {}).get("pin", 2), machine.Pin.OUT)
led.value(1)  # active low: off
adc = machine.ADC(0)
t_value = ("maison/%s/valeur" % room).encode()
t_led = ("maison/%s/led" % room).encode()

params = {}
if m["tls"]:
    try:
        import ussl
    except ImportError:
        import ssl as ussl

        sys.modules["ussl"] = ussl  # umqtt.simple 1.3.4 imports ussl, gone since MicroPython 1.22
    with open(m["tls"]["ca"], "rb") as f:
        params = {"server_hostname": m["host"]}
        if hasattr(ussl, "CERT_REQUIRED"):  # an ESP8266's axTLS cannot verify: it has none
            params.update(cert_reqs=ussl.CERT_REQUIRED, cadata=f.read())
client = MQTTClient("naive-" + room, m["host"], m["port"], m.get("user"), m.get("password"),
                    keepalive=60, ssl=bool(m["tls"]), ssl_params=params)


def on_message(topic, msg):
    on = msg == b"1"
    led.value(0 if on else 1)
    client.publish(t_led, b"1" if on else b"0", retain=True)


client.set_callback(on_message)
client.connect()
client.subscribe(b"ctrlled")
client.subscribe(("maison/%s/led/set" % room).encode())
print("naive: connected to %s:%d" % (m["host"], m["port"]))
while True:
    client.publish(t_value, str(adc.read_u16()).encode())
    time.sleep(period)
    client.check_msg()
