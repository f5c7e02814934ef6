# make bench's memory yardstick: the bare umqtt.simple script, which only connects,
# subscribes and publishes once. The smallest heap it runs in is shown beside the
# node's. MicroPython; reads the node's config.json only to find the broker.
import gc
import json
import sys

from umqtt.simple import MQTTClient

with open("config.json") as f:
    cfg = json.load(f)
m = cfg["mqtt"]
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
client = MQTTClient("bare-" + cfg["room"], m["host"], m["port"], m.get("user"), m.get("password"),
                    keepalive=60, ssl=bool(m["tls"]), ssl_params=params)
topic = ("maison/%s/valeur" % cfg["room"]).encode()
del cfg, m
gc.collect()
client.set_callback(lambda topic, msg: None)
client.connect()
client.subscribe(b"ctrlled")
client.publish(topic, b"bare")
gc.collect()
print("bare: published; heap in use %s" % (gc.mem_alloc() if hasattr(gc, "mem_alloc") else "?"))
client.disconnect()
