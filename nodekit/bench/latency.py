"""Command latency, over TLS, for the node and for the naive reference loop (bench/naive.py).

(a) inside the board: from the command's bytes reaching the board's socket to the LED pin
    changing. The first time is tshark's (kernel) timestamp of the broker's TLS record carrying
    the command to the board's port on `lo`; the second is the simulated board's own record of
    the pin write (machine.Pin, time.time_ns() with SIMBOARD_PIN_LOG set). Both clocks are this
    machine's CLOCK_REALTIME. The record is told apart by its size: between readings the board
    receives only the command (a PUBLISH of at least 5 + len(topic) bytes), PUBACKs (4 bytes)
    and PINGRESPs (2 bytes), and TLS adds the same 16..29 bytes to each, so the command's record
    is the first one after the command was sent that is at least 16 bytes longer than the
    smallest possible command.
(b) seen from outside: from an independent client's publish on maison/<room>/led/set to the
    LED state echoed on maison/<room>/led reaching that client (same perf_counter clock).

Commands alternate 1/0 (each one changes the pin) and are sent one at a time, each after the
previous echo plus a random pause, so they fall at random times between readings. They go
at QoS 0, as the tutorials' `mosquitto_pub -m 1` sends them.
"""
import random
import time

from nodekit.bench.rig import capture, summary, tshark
from nodekit.rules import topics

AEAD_MIN = 16  # the smallest TLS overhead per record (a 16-byte tag)


def command_frames(pcap, broker_port, board_port, min_len):
    """Wall times of broker->board frames carrying a TLS application-data record >= min_len."""
    rows = tshark(pcap, ["tcp.port==%d,tls" % broker_port],
                  "tcp.srcport == %d && tcp.dstport == %d && (tls.record.content_type == 23 || "
                  "tls.record.opaque_type == 23)" % (broker_port, board_port),
                  "frame.time_epoch", "tls.record.length")
    return [float(t[0]) for t, lengths in rows if any(int(n) >= min_len for n in lengths)]


def run_one(rig, room, runtime, client, commands, period_s, gap_s, seed, log):
    """One board (client "node" or "naive") on the TLS port, `commands` commands."""
    name = "lat-%s-%s" % (client, runtime)
    cfg = rig.variant(room, name, period_s=period_s, stats_s=3600)
    t_set, t_led, t_val = (t % room for t in (topics.LED_SET, topics.LED, topics.VALUE))
    min_len = 4 + len(t_set) + 1 + AEAD_MIN  # header, topic length, topic, one payload byte
    pcap = rig.root / (name + ".pcapng")
    w = rig.watcher
    rng = random.Random(seed)
    sent = []
    with capture(pcap, [rig.port]):
        k = w.count(t_val)
        board = rig.board(cfg, runtime, name, script="naive" if client == "naive" else None, pin_log=True)
        if not w.wait(t_val, 1, timeout=30, since=k):
            board.stop()
            raise RuntimeError("%s on %s never published a reading:\n%s" % (client, runtime, board.log()[-2000:]))
        port = board.local_port(rig.port)
        time.sleep(min(1.0, period_s))  # past the connection's first burst
        on = False  # the LED is off at power-on (and this board folder is new)
        for i in range(commands):
            time.sleep(rng.uniform(0.02, gap_s))
            on = not on
            payload = b"1" if on else b"0"
            k = w.count(t_led)
            t, wall = w.publish(t_set, payload, qos=0)  # as `mosquitto_pub -t ctrlled -m 1` sends it
            echo = w.wait(t_led, 1, timeout=3 * period_s + 5, since=k, where=lambda m: m[2] == payload)
            sent.append((wall, on, echo[0] - t if echo else None))
            if echo is None:
                log("latency: %s/%s: no echo for command %d" % (client, runtime, i))
                on = board.sim.led_pin_level() == 0
        time.sleep(0.3)
        alive = board.alive()
        board.stop()
    frames = command_frames(pcap, rig.port, port, min_len)
    pins = [(t, level) for t, pin, level in board.pins()]
    inside, unmatched, fi, pi = [], 0, 0, 0
    for wall, on, _ in sent:
        while fi < len(frames) and frames[fi] < wall:
            fi += 1
        while pi < len(pins) and pins[pi][0] < wall:
            pi += 1
        level = 0 if on else 1  # the LED is active low
        pj = pi
        while pj < len(pins) and pins[pj][1] != level:
            pj += 1
        if fi < len(frames) and pj < len(pins) and pins[pj][0] >= frames[fi]:
            inside.append((pins[pj][0] - frames[fi]) * 1000)
            fi += 1
        else:
            unmatched += 1
    outside = [e * 1000 for _, _, e in sent if e is not None]
    return {"client": client, "runtime": runtime, "transport": "tls", "period_s": period_s,
            "commands": len(sent), "echoes": len(outside), "unmatched_a": unmatched, "alive": alive,
            "a_ms": summary(inside, 3), "b_ms": summary(outside, 3),
            "a_samples": [round(v, 3) for v in inside], "b_samples": [round(v, 3) for v in outside]}
