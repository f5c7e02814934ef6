"""Cadence: when each reading leaves the board, against the node's grid t0 + k*period.

The node runs on the plaintext port with "payload": "json", so tshark names each reading's
PUBLISH and reads its sequence number. The publish time is tshark's timestamp of the frame
carrying it (node -> broker, on `lo`). The grid is placed through the most punctual reading
(t0 = min over readings of t - k*period), so each deviation is how late that reading left,
k being its sequence number. Readings published from the buffer after the connection (their
age_ms says so) are left out: they wait for the connection, not for the grid. Drift is the
least-squares slope of the deviation against time, times the run's length.
"""
import json
import time

from nodekit.bench.rig import pct, tshark
from nodekit.rules import topics


def readings(pcap, broker_port, board_port, topic):
    """[(wall time, seq, age_ms)] of the board's readings in the capture."""
    rows = tshark(pcap, ["tcp.port==%d,mqtt" % broker_port],
                  'tcp.srcport == %d && tcp.dstport == %d && mqtt.topic == "%s"' % (board_port, broker_port, topic),
                  "frame.time_epoch", "mqtt.topic", "mqtt.msg")
    out = []
    for (t,), names, msgs in rows:
        for top, msg in zip(names, msgs):
            if top != topic:
                continue
            try:
                d = json.loads(bytes.fromhex(msg.replace(":", "")))
            except ValueError:
                continue
            out.append((float(t), d["seq"], d["age_ms"]))
    return out


def analyse(rows, period_s):
    rows = sorted(rows, key=lambda r: r[1])
    start = next((i for i, r in enumerate(rows) if r[2] < min(50, period_s * 500)), None)
    if start is None:
        return None
    rows = rows[start:]
    s0 = rows[0][1]
    t0 = min(t - (s - s0) * period_s for t, s, _ in rows)
    dev = [(t - t0, (t - t0 - (s - s0) * period_s) * 1000) for t, s, _ in rows]
    n = len(dev)
    mx = sum(x for x, _ in dev) / n
    my = sum(y for _, y in dev) / n
    sxx = sum((x - mx) ** 2 for x, _ in dev)
    slope = sum((x - mx) * (y - my) for x, y in dev) / sxx if sxx else 0.0
    span = dev[-1][0] - dev[0][0]
    devs = [y for _, y in dev]
    return {"period_s": period_s, "readings": n, "periods": rows[-1][1] - s0 + 1,
            "missing": rows[-1][1] - s0 + 1 - len({s for _, s, _ in rows}), "duration_s": round(span, 1),
            "mean_ms": round(my, 3), "p99_ms": round(pct(devs, 99), 3), "max_ms": round(max(devs), 3),
            "drift_ms": round(slope * span, 3), "drift_ms_per_hour": round(slope * 3600, 2),
            "series": [[round(x, 3), round(y, 3)] for x, y in dev]}


def run_one(rig, room, runtime, period_s, periods, log, name=None):
    """One node on the plaintext port for `periods` periods (capture and node started here)."""
    from nodekit.bench.rig import capture

    name = name or "cadence-%s-%s" % (runtime, str(period_s).replace(".", "_"))
    cfg = rig.variant(room, name, plaintext=True, period_s=period_s, payload="json")
    topic = topics.VALUE % room
    pcap = rig.root / (name + ".pcapng")
    w = rig.watcher
    with capture(pcap, [rig.local_port]):
        k = w.count(topic)
        board = rig.board(cfg, runtime, name)
        if not w.wait(topic, 1, timeout=30, since=k):
            board.stop()
            raise RuntimeError("cadence: the node on %s never published:\n%s" % (runtime, board.log()[-2000:]))
        port = board.local_port(rig.local_port)
        w.wait(topic, periods + 3, timeout=periods * period_s * 2 + 30, since=k)
        alive = board.alive()
        board.stop()
        time.sleep(0.2)
    r = analyse(readings(pcap, rig.local_port, port, topic), period_s)
    if r is None:
        raise RuntimeError("cadence: no reading of the node on %s was on time" % runtime)
    r.update(runtime=runtime, transport="plain", alive=alive)
    log("cadence %s %.1f s: %d readings, max %.2f ms, drift %.2f ms" % (
        runtime, period_s, r["readings"], r["max_ms"], r["drift_ms"]))
    return r
