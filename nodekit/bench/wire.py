"""Bytes on the wire per reading, from a tshark capture on `lo`.

Each board runs alone on its connection with a short period and nothing else to say
(stats once an hour, no commands), so everything it sends between two readings belongs to a
reading: its frames to the broker are grouped into bursts (a gap of half a period or more
starts a new one), and each burst is one reading. The first bursts (connection, backlog) and
the last are left out. Per reading: TCP segments with data and their payload bytes, whole
frames on the wire (with the IP and TCP headers), TLS records, and the segments the broker
sends back (its TCP ACKs, and the PUBACK at QoS 1). Compared in the same run: the node's own
one-write PUBLISH (QoS 0 and 1) and umqtt.simple's publish(), which bench/naive.py calls.
"""
import statistics

from nodekit.bench.rig import capture, tshark
from nodekit.rules import topics

CLIENTS = (("node", 0), ("node", 1), ("umqtt.simple", 0))


def bursts(rows, gap_s):
    out = []
    for r in rows:
        if out and r["t"] - out[-1][-1]["t"] < gap_s:
            out[-1].append(r)
        else:
            out.append([r])
    return out


def analyse(pcap, broker_port, board_port, tls, period_s):
    decode = ["tcp.port==%d,%s" % (broker_port, "tls" if tls else "mqtt")]
    fields = ("frame.time_epoch", "tcp.srcport", "tcp.len", "frame.len", "tls.record.length")
    rows = []
    for t, src, tcp_len, frame_len, records in tshark(
            pcap, decode, "tcp.port == %d && tcp.port == %d" % (broker_port, board_port), *fields):
        rows.append({"t": float(t[0]), "out": int(src[0]) == board_port, "len": int(tcp_len[0]),
                     "frame": int(frame_len[0]), "records": len(records)})
    out = [r for r in rows if r["out"] and r["len"] > 0]
    groups = bursts(out, period_s / 2)[3:-1]
    per = []
    for g in groups:
        t0, t1 = g[0]["t"], g[-1]["t"] + period_s / 2
        back = [r for r in rows if not r["out"] and t0 <= r["t"] < t1]
        per.append({"segments": len(g), "bytes": sum(r["len"] for r in g), "frame_bytes": sum(r["frame"] for r in g),
                    "tls_records": sum(r["records"] for r in g) if tls else None, "segments_back": len(back)})
    if not per:
        return None
    med = lambda k: statistics.median(p[k] for p in per) if per[0][k] is not None else None  # noqa: E731
    return {"readings": len(per), "segments": med("segments"), "bytes": med("bytes"),
            "frame_bytes": med("frame_bytes"), "tls_records": med("tls_records"),
            "segments_back": med("segments_back"), "max_segments": max(p["segments"] for p in per),
            "max_tls_records": max(p["tls_records"] for p in per) if tls else None}


def run(rig, room, runtimes, readings, log, period_s=0.25):
    results = []
    for runtime in runtimes:
        for transport in ("tls", "plain"):
            port = rig.port if transport == "tls" else rig.local_port
            name = "wire-%s-%s" % (runtime, transport)
            pcap = rig.root / (name + ".pcapng")
            runs = []
            topic = topics.VALUE % room
            with capture(pcap, [port]):
                for client, qos in CLIENTS:
                    cname = "%s-%s-%d" % (name, client.replace(".", "_"), qos)
                    cfg = rig.variant(room, cname, period_s=period_s, stats_s=3600, qos=qos,
                                      plaintext=transport == "plain")
                    k = rig.watcher.count(topic)
                    board = rig.board(cfg, runtime, cname, script="naive" if client != "node" else None)
                    if not rig.watcher.wait(topic, 1, timeout=30, since=k):
                        board.stop()
                        raise RuntimeError("wire: %s on %s never published:\n%s" % (client, runtime, board.log()[-2000:]))
                    bport = board.local_port(port)
                    rig.watcher.wait(topic, readings + 5, timeout=readings * period_s * 3 + 20, since=k)
                    board.stop()
                    runs.append((client, qos, bport))
            for client, qos, bport in runs:
                r = analyse(pcap, port, bport, transport == "tls", period_s) or {}
                r.update(runtime=runtime, transport=transport, client=client, qos=qos)
                log("wire %s %s %s QoS %d: %s segments, %s bytes, %s TLS records per reading" % (
                    runtime, transport, client, qos, r.get("segments"), r.get("bytes"), r.get("tls_records")))
                results.append(r)
    return results
