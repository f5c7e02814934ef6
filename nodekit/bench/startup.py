"""Start-up: from starting the board's process to its first reading reaching the broker.

Measured by the independent client: perf_counter just before the simulated board's process
is started, to that client receiving the first maison/<room>/valeur. It includes the
runtime's own start, importing (and, from .py under MicroPython, compiling) the node, the
simulated Wi-Fi join (200 ms, nodekit/simboard/network.py), the TCP and TLS connection,
CONNECT, the subscriptions, and the broker forwarding the reading.
"""
import statistics
import time

from nodekit.rules import topics

VARIANTS = (("cpython", "py"), ("micropython", "py"), ("micropython", "mpy"))


def run(rig, room, repeats, log):
    w = rig.watcher
    topic = topics.VALUE % room
    out = []
    for runtime, code in VARIANTS:
        for transport in ("tls", "plain"):
            times = []
            for i in range(repeats):
                name = "startup-%s-%s-%s-%d" % (runtime, code, transport, i)
                cfg = rig.variant(room, name, period_s=5, stats_s=3600, plaintext=transport == "plain")
                k = w.count(topic)
                board = rig.board(cfg, runtime, name, lib=rig.lib() if code == "mpy" else None)
                first = w.wait(topic, 1, timeout=30, since=k)
                board.stop()
                if first is None:
                    raise RuntimeError("start-up: no reading from %s (%s, %s):\n%s"
                                       % (runtime, code, transport, board.log()[-2000:]))
                times.append((first[0] - board.t_start) * 1000)
                time.sleep(0.2)
            r = {"runtime": runtime, "code": code, "transport": transport, "runs": len(times),
                 "median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                 "max_ms": round(max(times), 1)}
            log("start-up %s %s %s: %.0f ms" % (runtime, code, transport, r["median_ms"]))
            out.append(r)
    return out
