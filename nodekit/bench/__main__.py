"""make bench: the node's figures, measured against a real Mosquitto running the project's
broker kit, under CPython and the MicroPython VM, beside a naive reference loop.

    .venv/bin/python -m nodekit.bench [--quick] [--out DIR] [--no-fleet]

Writes OUT/results.json, OUT/results.md (the table), OUT/latency.png and OUT/cadence.png
(OUT: bench/, or bench/quick/ with --quick), and prints the table. --quick runs every measurement on tiny sizes (the smoke test's mode).
"""
import argparse
import datetime
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from nodekit import REPO, errors
from nodekit.bench import cadence, latency, memory, report, startup, wire
from nodekit.bench.rig import Rig
from nodekit.errors import Failure
from nodekit.sim import simnode

RUNTIMES = ("cpython", "micropython")
SHORT = {"cpython": "cp", "micropython": "mp"}  # room name suffixes

FULL = {"latency_commands": 200, "latency_period_s": 0.5, "naive_commands": 200,
        "cadence_period_s": 0.2, "cadence_periods": 150, "real_period_s": 5.0, "real_periods": 20,
        "startup_repeats": 3, "wire_readings": 10, "heap_steady_s": 90}
QUICK = {"latency_commands": 12, "latency_period_s": 0.3, "naive_commands": 6,
         "cadence_period_s": 0.1, "cadence_periods": 20, "real_period_s": 0.5, "real_periods": 6,
         "startup_repeats": 1, "wire_readings": 4, "heap_steady_s": 8}
STEADY_HEAP = 256 * 1024  # in use does not depend on the heap's size; this one is ample


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def environment():
    def version(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    mp = simnode.micropython_path()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": "%s, %d cores" % (platform.machine(), os.cpu_count()), "system": platform.platform(),
            "cpython": platform.python_version(),
            "micropython": version([mp, "-c", "import sys; print(sys.version)"]) if mp else None,
            "mosquitto": version(["mosquitto", "-h"]), "tshark": version(["tshark", "--version"]),
            "load_at_start": os.getloadavg()}


def in_thread(results, key, fn, *args):
    def go():
        try:
            results[key] = fn(*args)
        except Exception as e:  # reported in the results, never lost in a thread
            results[key] = {"error": "%s: %s" % (type(e).__name__, e)}
            log("%s failed: %s" % (key, e))
    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def measure(rig, p, quick):
    res = {}
    rig.configs(["lat", "naivecp", "naivemp", "cadcp", "cadmp", "realcp", "realmp", "heap", "start",
                         "wire", "mem"])
    t = time.monotonic()
    # 1. The node's command latency, alone on the machine (both runtimes, one after the other).
    res["latency"] = []
    for i, rt in enumerate(RUNTIMES):
        log("latency: node on %s, %d commands" % (rt, p["latency_commands"]))
        res["latency"].append(latency.run_one(rig, "lat", rt, "node", p["latency_commands"], p["latency_period_s"],
                                              p["latency_period_s"], 100 + i, log))
    res["seconds"] = {"latency_node": round(time.monotonic() - t)}
    # 2. What spends its time waiting, side by side: the naive loop (both runtimes) and the
    # heap in steady state; the short-period cadence runs meanwhile, one runtime after the other.
    t = time.monotonic()
    log("naive loop latency (%d commands each) and heap in steady state, meanwhile"
        % p["naive_commands"])
    side = {}
    threads = [in_thread(side, "naive-" + rt, latency.run_one, rig, "naive" + SHORT[rt],
                         rt, "naive", p["naive_commands"], p["latency_period_s"], p["latency_period_s"], 200 + i, log)
               for i, rt in enumerate(RUNTIMES)]
    threads.append(in_thread(side, "heap", memory.steady, rig, "heap", p["heap_steady_s"], STEADY_HEAP, log))
    short = []
    for rt in RUNTIMES:
        try:
            short.append(cadence.run_one(rig, "cad" + SHORT[rt], rt, p["cadence_period_s"],
                                         p["cadence_periods"], log))
        except Exception as e:
            short.append({"runtime": rt, "error": str(e)})
    for th in threads:
        th.join()
    res["latency"] += [side["naive-" + rt] for rt in RUNTIMES]
    res["memory"] = {"steady": side["heap"]}
    res["seconds"]["side_by_side"] = round(time.monotonic() - t)
    # The cadence at the real period: the two runtimes together, and nothing else running.
    t = time.monotonic()
    log("cadence at the real period (%.1f s), both runtimes, alone" % p["real_period_s"])
    real = {}
    for th in [in_thread(real, rt, cadence.run_one, rig, "real" + SHORT[rt], rt, p["real_period_s"],
                         p["real_periods"], log) for rt in RUNTIMES]:
        th.join()
    res["cadence"] = {"short": short, "real": [real[rt] for rt in RUNTIMES]}
    res["seconds"]["cadence_real"] = round(time.monotonic() - t)
    # 3. Start-up, bytes on the wire, smallest heaps.
    t = time.monotonic()
    res["startup"] = startup.run(rig, "start", p["startup_repeats"], log)
    res["seconds"]["startup"] = round(time.monotonic() - t)
    t = time.monotonic()
    res["wire"] = wire.run(rig, "wire", ("micropython",) if quick else RUNTIMES, p["wire_readings"], log)
    res["seconds"]["wire"] = round(time.monotonic() - t)
    t = time.monotonic()
    # Per board profile: smallest heap, free heap at the board's heap, reconnects (memory.py).
    res["memory"].update(memory.run(rig, "mem", quick, log, rig.hardware()))
    res["seconds"]["memory"] = round(time.monotonic() - t)
    return res


def fleet(quick):
    try:
        from nodekit.bench import fleet as fleet_bench
    except ImportError:
        return None
    log("fleet (nodekit/bench/fleet.py)")
    try:
        return fleet_bench.run(quick=quick)
    except Exception as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


def main(argv=None):
    return errors.run("make bench", _bench, argv)


def _bench(argv):
    ap = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    ap.add_argument("--out", help="where results.json and the plots go (default bench/, and bench/quick/ for "
                                  "--quick, so a quick run never replaces the full run's results)")
    ap.add_argument("--no-fleet", action="store_true", help="leave out the fleet benchmark")
    a = ap.parse_args(argv)
    if not simnode.micropython_path():
        raise Failure("micropython", "the MicroPython VM is not installed (make setup)")
    for tool in ("mosquitto", "tshark", "ss"):
        if not (shutil.which(tool) or (tool == "mosquitto" and os.path.exists("/usr/sbin/mosquitto"))):
            raise Failure(tool, "not installed (make setup installs the system packages)")
    if os.geteuid() != 0:
        raise Failure("tshark", "capturing on lo needs root; run make bench as root")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: stop the boards, tshark and the broker
    p = QUICK if a.quick else FULL
    out = pathlib.Path(a.out or REPO / "bench" / ("quick" if a.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-"))
    results = {"command": "make bench" + (" QUICK=1" if a.quick else ""), "quick": a.quick, "params": p,
               "environment": environment()}
    rig = None
    try:
        rig = Rig(work)
        results.update(measure(rig, p, a.quick))
    except RuntimeError as e:
        raise Failure(str(e))
    finally:
        if rig:
            rig.stop()
        if not os.getenv("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    if not a.no_fleet:
        t = time.monotonic()
        f = fleet(a.quick)
        if f is not None:
            results["fleet"] = f
            results["seconds"]["fleet"] = round(time.monotonic() - t)
    results["seconds"]["total"] = round(time.monotonic() - t0)
    report.finish(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
