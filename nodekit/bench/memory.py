"""Memory in the MicroPython VM (unix port): the smallest heap the node runs in, and the heap
it keeps in use in steady state.

Smallest heap: `micropython -X heapsize=N`, N found by bisection to 1 KB (4 KB in quick
mode). The node passes at N when it connects, delivers 3 readings, applies a command and
echoes it, delivers 3 more readings, is still running, and never printed a MemoryError (the
node survives them; passing means it never needed to). bench/bare.py passes when it has
published its message and ended normally. Each is run from the .py sources (compiled in RAM
at import, as a board would) and from .mpy (nodekit.build, mpy-cross). The simulated
hardware's machine.py and network.py are Python files compiled in RAM at import, where a
board has them in firmware: their cost is measured separately and is included in the node's
figures (bare.py does not import them). Objects and pointers are 8 bytes on this 64-bit
port against 4 on an ESP8266/ESP32, so these figures bound a board's from above.

Heap in use: the node publishes its free heap after gc.collect() in its stats; the heap's
total at that size (gc.mem_alloc() + gc.mem_free()) is measured once, and in use = total - free.
"""
import json
import re
import subprocess
import threading
import time

from nodekit import sim

MEMORY_FAILED = re.compile(r"MemoryError|memory allocation failed|out of memory")


def heap_total(heap):
    """gc.mem_alloc() + gc.mem_free() in the VM started with -X heapsize=heap."""
    r = subprocess.run([sim.micropython_path(), "-X", "heapsize=%d" % heap, "-c",
                        "import gc; gc.collect(); print(gc.mem_alloc() + gc.mem_free())"],
                       capture_output=True, text=True, timeout=30)
    return int(r.stdout.split()[-1])


def simboard_cost(hardware):
    """Heap kept in use by the simulated board's machine and network modules, loaded from
    .mpy as in the memory runs (after collect)."""
    code = ("import sys, gc\nsys.path.insert(0, %r)\ngc.collect()\na = gc.mem_alloc()\n"
            "import machine, network\ngc.collect()\nprint(gc.mem_alloc() - a)\n" % str(hardware))
    r = subprocess.run([sim.micropython_path(), "-c", code], capture_output=True, text=True, timeout=30)
    return int(r.stdout.split()[-1])


def trial(rig, room, client, transport, code, heap, timeout=20.0):
    """True if `client` (node or bare) runs in a heap of `heap` bytes."""
    name = "mem-%s-%s-%s-%d" % (client, transport, code, heap)
    cfg = rig.variant(room, name, period_s=0.2, stats_s=3600, plaintext=transport == "plain")
    w = rig.watcher
    t_val, t_set, t_led = ("maison/%s/%s" % (room, t) for t in ("valeur", "led/set", "led"))
    k, kl = w.count(t_val), w.count(t_led)
    board = rig.board(cfg, "micropython", name, heap=heap, lib=rig.lib() if code == "mpy" else None,
                      script="bare" if client == "bare" else None, hw_mpy=True)
    deadline = time.monotonic() + timeout
    stage = 0
    try:
        while time.monotonic() < deadline:
            running = board.alive()
            if MEMORY_FAILED.search(board.log()):
                return False
            if client == "bare":
                if not running:
                    return "bare: published" in board.log() and w.wait(t_val, 1, timeout=2, since=k) is not None
            else:
                if not running:
                    return False
                n = w.count(t_val) - k
                if stage == 0 and n >= 3:
                    w.publish(t_set, b"1")
                    stage = 1
                elif stage == 1 and w.wait(t_led, 1, timeout=0, since=kl, where=lambda m: m[2] == b"1"):
                    k = w.count(t_val)
                    stage = 2
                elif stage == 2 and n >= 3:
                    time.sleep(0.1)
                    return board.alive() and not MEMORY_FAILED.search(board.log())
            time.sleep(0.05)
        return False
    finally:
        board.stop()


def smallest(rig, room, client, transport, code, step, log, lo=4096, hi=64 * 1024):
    """Bisection: the smallest heap (a multiple of `step`) in which trial() passes."""
    tried = {}
    while not trial(rig, room, client, transport, code, hi):
        tried[hi] = False
        lo, hi = hi, hi * 2
        if hi > 1024 * 1024:
            return {"heap": None, "tried": tried}
    tried[hi] = True
    while hi - lo > step:
        mid = (lo // step + hi // step) // 2 * step
        ok = trial(rig, room, client, transport, code, mid)
        tried[mid] = ok
        if ok:
            hi = mid
        else:
            lo = mid
    log("memory %s %s %s: %d KB (fails at %d KB)" % (client, transport, code, hi // 1024, lo // 1024))
    return {"heap": hi, "fails_at": lo, "tried": {str(k): v for k, v in sorted(tried.items())}}


def smallest_heaps(rig, room, quick, log):
    step = 4096 if quick else 1024
    variants = ([("node", "plain", "mpy"), ("bare", "plain", "mpy")] if quick else
                [(c, t, k) for c in ("node", "bare") for t in ("tls", "plain") for k in ("mpy", "py")])
    out = []
    for client, transport, code in variants:
        r = smallest(rig, room, client, transport, code, step, log)
        r.update(client=client, transport=transport, code=code, step=step)
        out.append(r)
    return out


def steady(rig, room, seconds, heap, log, stop=None):
    """The node (.mpy, TLS) at `heap` for `seconds`, stats every second and a command every
    second or so: the heap in use after collect over time."""
    name = "heap-steady"
    cfg = rig.variant(room, name, period_s=0.5, stats_s=1)
    w = rig.watcher
    t_stats, t_set = "maison/%s/stats" % room, "maison/%s/led/set" % room
    total = heap_total(heap)
    k = w.count(t_stats)
    board = rig.board(cfg, "micropython", name, heap=heap, lib=rig.lib(), hw_mpy=True)
    t_end = time.monotonic() + seconds
    on = False
    try:
        while time.monotonic() < t_end and not (stop and stop.is_set()):
            time.sleep(1.0)
            on = not on
            w.publish(t_set, b"1" if on else b"0")
        alive = board.alive()
    finally:
        board.stop()
    with w.lock:
        msgs = list(w.seen.get(t_stats, ()))[k:]
    series = []
    t0 = msgs[0][0] if msgs else 0
    for t, _, payload, _ in msgs:
        try:
            d = json.loads(payload)
        except ValueError:
            continue
        if d.get("free_heap") is not None:
            series.append((round(t - t0, 2), total - d["free_heap"], d.get("commands")))
    if len(series) < 6:
        return {"heap": heap, "error": "too few stats messages (%d)" % len(series), "alive": alive}
    body = series[3:]  # the first seconds: connection, first command
    first = sum(v for _, v, _ in body[:5]) / 5
    last = sum(v for _, v, _ in body[-5:]) / 5
    n = len(body)
    mx = sum(x for x, _, _ in body) / n
    my = sum(v for _, v, _ in body) / n
    sxx = sum((x - mx) ** 2 for x, _, _ in body)
    slope = sum((x - mx) * (v - my) for x, v, _ in body) / sxx if sxx else 0.0
    r = {"heap": heap, "heap_total": total, "samples": len(series), "duration_s": body[-1][0],
         "commands": body[-1][2], "alive": alive, "in_use_first": round(first), "in_use_last": round(last),
         "in_use_max": max(v for _, v, _ in body), "in_use_min": min(v for _, v, _ in body),
         "growth_bytes": round(last - first), "slope_bytes_per_min": round(slope * 60, 1),
         "series": [[x, v] for x, v, _ in series]}
    log("memory steady: %d bytes in use at start, %d at end (%d commands, %.0f s)"
        % (r["in_use_first"], r["in_use_last"], r["commands"] or 0, r["duration_s"]))
    return r


def start_steady(rig, room, seconds, heap, log):
    """steady() in a thread; returns (thread, result holder)."""
    holder = {}

    def go():
        try:
            holder["result"] = steady(rig, room, seconds, heap, log)
        except Exception as e:  # reported, not raised from a thread
            holder["result"] = {"error": str(e)}

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, holder
