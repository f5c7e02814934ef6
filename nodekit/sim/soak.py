"""Soak: one node for a long time against the kit's broker, with faults at random.

    make soak [DURATION=3600] [RUNTIME=micropython]

Faults: broker restart, broker frozen past keepalive, Wi-Fi loss, sensor
errors. At the end: every reading the node took is seen by an independent
subscriber, in order, except those the node itself counted as dropped; the
node's counters match what the subscriber saw; the free heap (MicroPython) does
not shrink. Prints a summary and exits 1 if any check fails.
"""
import argparse
import json
import os
import pathlib
import random
import signal
import sys
import tempfile
import threading
import time

import paho.mqtt.client as paho

from nodekit.broker import mosquitto, kit
from nodekit.rules import topics
from nodekit.sim import simnode


def run(duration, runtime, seed=None, period=0.5, out=sys.stdout):
    rng = random.Random(seed)
    work = pathlib.Path(tempfile.mkdtemp(prefix="soak-"))
    kdir = str(work / "kit")
    s = kit.make_broker(kdir, host="localhost", port=mosquitto.free_port(), tools_port=mosquitto.free_port(), ws_port=0,
                        local_port=mosquitto.free_port(), bind="127.0.0.1")
    cfg_path = kit.add_node(kdir, "salon", wifi_ssid="maison", wifi_password="pw", sensor="sim")
    cfg = json.loads(open(cfg_path).read())
    cfg.update(period_s=period, payload="json", stats_s=5, backoff_max_s=4, buffer=250)  # an ESP8266's most
    cfg["mqtt"]["keepalive"] = 4
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    mosq = mosquitto.Mosquitto(os.path.join(kdir, "mosquitto.conf"), s["port"], str(work / "mosquitto.log"),
                            plain_port=s["local_port"]).start()
    dash = json.load(open(os.path.join(kdir, "dashboard.json")))
    seen, stats, lock = [], [], threading.Lock()

    def on_message(c, u, m):
        with lock:
            (stats if m.topic == topics.STATS % "salon" else seen).append(json.loads(m.payload))

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="soak-witness", clean_session=False)
    sub.tls_set(ca_certs=os.path.join(kdir, "ca.pem"))
    sub.username_pw_set(dash["user"], dash["password"])
    sub.on_message = on_message
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe([(topics.VALUE % "salon", 1), (topics.STATS % "salon", 1)])
    sub.connect("localhost", s["tools_port"])
    sub.loop_start()
    log = open(work / "node.log", "wb")
    node = simnode.SimNode(cfg_path, work / "board", runtime, output=log).start()
    faults = {"broker restart": 0, "broker frozen": 0, "wifi loss": 0, "sensor error": 0}
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            time.sleep(rng.uniform(3, 12))
            node.poll()
            fault = rng.choice(list(faults))
            faults[fault] += 1
            if fault == "broker restart":
                mosq.stop()
                time.sleep(rng.uniform(0.5, 8))
                mosq.start()
            elif fault == "broker frozen":
                mosq.proc.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1, 8))
                mosq.proc.send_signal(signal.SIGCONT)
            elif fault == "wifi loss":
                simnode.set_ap(node.board_dir, "maison", "pw", up=False)
                time.sleep(rng.uniform(0.5, 10))
                simnode.set_ap(node.board_dir, "maison", "pw", up=True)
            else:
                (node.board_dir / "adc0").write_text("error")
                time.sleep(rng.uniform(0.2, 2))
                (node.board_dir / "adc0").unlink()
        time.sleep(15)  # let the backlog drain and the last stats arrive
    finally:
        node.stop()
        sub.loop_stop()
        mosq.stop()
        log.close()
    with lock:
        seqs = [r["seq"] for r in seen]
        last = stats[-1] if stats else {}
    unique = sorted(set(seqs))
    in_order = all(a <= b for a, b in zip(seqs, seqs[1:])) or _ordered_after_redelivery(seqs)
    missing = sorted(set(range(1, unique[-1] + 1)) - set(unique)) if unique else []
    heaps = [x["free_heap"] for x in stats if x.get("free_heap") is not None]
    checks = {
        "readings seen": len(unique) > 0,
        "none missing beyond the node's dropped count": len(missing) <= last.get("dropped", 0),
        "in order": in_order,
        # The last stats came up to stats_s before the end: the readings after it are not in it.
        "node's counters match the subscriber": last.get("sent", 0) <= len(seqs)
        and len(unique) - last.get("sent", 0) <= 5 / period + last.get("waiting", 0) + 2,
        "no node restarts": node.resets == 0,
        "no traceback": b"Traceback" not in (work / "node.log").read_bytes(),
    }
    if len(heaps) >= 4:
        q = len(heaps) // 4
        checks["free heap not shrinking"] = min(heaps[-q:]) >= min(heaps[:q]) - 1024
    print("soak: %d s on %s, faults %s" % (duration, runtime, faults), file=out)
    print("soak: %d readings seen (%d duplicates), %d missing, node dropped %d, sent %d, reconnects %d"
          % (len(unique), len(seqs) - len(unique), len(missing), last.get("dropped", 0), last.get("sent", 0),
             last.get("reconnects", 0)), file=out)
    if heaps:
        print("soak: free heap first/min/last %d/%d/%d bytes" % (heaps[0], min(heaps), heaps[-1]), file=out)
    for name, ok in checks.items():
        print("soak: %-45s %s" % (name, "ok" if ok else "FAIL"), file=out)
    if not checks.get("free heap not shrinking", True):
        print("soak: free heap series %s" % heaps, file=out)
    print("soak: logs in %s" % work, file=out)
    return all(checks.values()), checks


def _ordered_after_redelivery(seqs):
    # At least once: a redelivered reading may repeat an earlier one, but the first
    # appearance of each reading must come in order.
    firsts, seen = [], set()
    for q in seqs:
        if q not in seen:
            seen.add(q)
            firsts.append(q)
    return firsts == sorted(firsts)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=3600)
    ap.add_argument("--runtime", default="micropython", choices=simnode.RUNTIMES)
    ap.add_argument("--seed", type=int)
    a = ap.parse_args(argv)
    ok, _ = run(a.duration, a.runtime, a.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
