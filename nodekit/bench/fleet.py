"""Fleet benchmark: the largest number of simulated TLS nodes this machine sustains at the
5 s period, with no reading lost and 99 % of them delivered within 100 ms.

The fleet (nodekit.sim.fleet: real board code, one process and one kit account per node,
TLS, one local Mosquitto) grows in steps; at each step every node has delivered a
reading, then a window of a few periods is measured: readings due in it that never
arrived (sequence numbers), how late the others arrived (from each node's fixed
schedule), and the CPU the nodes, the broker and the harness used (/proc). The first
step that fails, or the time budget, ends the run; the result names what saturated.

    .venv/bin/python -m nodekit.bench.fleet [--quick]
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

from nodekit.broker import kit
from nodekit.errors import Failure, report
from nodekit.sim import fleet as fl

STEPS = (100, 250, 500, 1000, 1500, 2000)
QUICK_STEPS = (10, 25)
WINDOW_S = 20   # four readings per node
DRAIN_S = 3     # a reading due just before the window's end still has this long to arrive
P99_MS = 100
TARGET = 1000
BROKER_SATURATED = 0.85  # Mosquitto runs on one core
MACHINE_SATURATED = 0.90


def _sustained(d):
    return d["lost"] == 0 and d["p99_ms"] is not None and d["p99_ms"] < P99_MS


def _verdict(step):
    """What ran out at this step, from the CPU figures."""
    c = step["cpu"]
    if c["broker_cores"] >= BROKER_SATURATED:
        return "broker: Mosquitto used %.2f of its one core" % c["broker_cores"]
    if c["machine_busy"] >= MACHINE_SATURATED:
        nodes = c["nodes_cores"]
        return ("simulator: the machine was %d%% busy, the %d node processes using %s of its %d cores "
                "(broker %.2f, harness %.2f)" % (100 * c["machine_busy"], step["nodes"],
                                                  "%.2f" % nodes if nodes is not None else "?", c["cores"],
                                                  c["broker_cores"], c["harness_cores"]))
    return ("neither CPU-bound (machine %d%% busy, broker %.2f cores): see the nodes' logs"
            % (100 * c["machine_busy"], c["broker_cores"]))


def _projection(step):
    """No step failed: from the largest step's figures, where each part would run out."""
    c, n = step["cpu"], step["nodes"]
    per_node = (c["nodes_cores"] or 0) / n
    by_cpu = int(c["cores"] / per_node) if per_node else None
    mem = fl.mem_available_mb()
    by_mem = int((mem + n * step["pss_mb_per_node"]) / step["pss_mb_per_node"]) if mem else None
    by_broker = int(n / c["broker_cores"]) if c["broker_cores"] else None
    first = min((v, k) for k, v in (("the nodes' CPU", by_cpu), ("the nodes' memory", by_mem),
                                    ("the broker's one core", by_broker)) if v)
    return {"nodes_cores_per_1000": round(1000 * per_node, 3), "broker_cores_per_1000": round(1000 * c["broker_cores"] / n, 3),
            "n_at_nodes_cpu_limit": by_cpu, "n_at_memory_limit": by_mem, "n_at_broker_cpu_limit": by_broker,
            "first_limit": "%s, near N=%d (the simulator runs out before the broker)" % (first[1], first[0])
            if first[1] != "the broker's one core" else "the broker's one core, near N=%d" % first[0]}


def _idle_cost_micropython(work, out, mosq, n=5, seconds=10):
    """CPU per connected, idle node in the MicroPython VM (for the report: why the fleet
    runs on CPython)."""
    configs = fl.add_accounts(out, n, start=0)
    witness = fl.Witness(out, "localhost", kit.load_settings(out)["tools_port"])
    f = fl.Fleet(configs, pathlib.Path(work) / "mp", "micropython")
    try:
        f.grow(n, witness.has, timeout_s=60)
        m = fl.CpuMeter(f, mosq.proc.pid)
        m.start()
        time.sleep(seconds)
        c = m.stop()
        pss = sum(fl.pss_mb(p) for p in f.pids()) / n
    finally:
        f.stop()
        witness.close()
    return {"nodes": n, "cores_per_node": round(c["nodes_cores"] / n, 4) if c["nodes_cores"] is not None else None,
            "pss_mb_per_node": round(pss, 1)}


def run(quick=False, budget_s=None, runtime="cpython", steps=None, log=None):
    """Step the fleet up; returns a dict (JSON-friendly) with every step's figures, the
    largest N sustained, and what saturated first."""
    log = log or (lambda msg: print("bench fleet: " + msg, file=sys.stderr, flush=True))
    steps = steps or (QUICK_STEPS if quick else STEPS)
    budget_s = budget_s or (90 if quick else 300)
    window = 10 if quick else WINDOW_S
    t_start = time.monotonic()
    fl.raise_fd_limit()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    result = {"target": "%d TLS nodes at %d s, nothing lost, p99 < %d ms" % (TARGET, fl.PERIOD_S, P99_MS),
              "runtime": runtime, "period_s": fl.PERIOD_S, "window_s": window, "steps": [],
              "largest_sustained": 0, "saturated": None, "stopped_by": None}
    out, mosq = fl.local_broker(work)
    witness = fleet = None
    try:
        t = time.monotonic()
        mosq.start()
        witness = fl.Witness(out, "localhost", kit.load_settings(out)["tools_port"])
        fleet = fl.Fleet([], work, runtime)
        start_s_per_node = 0.2  # first guess; measured at each step
        for n in steps:
            have = len(fleet.nodes)
            left = budget_s - (time.monotonic() - t_start)
            need = (n - have) * start_s_per_node + 2 * fl.PERIOD_S + window + DRAIN_S + 10
            if need > left:
                result["stopped_by"] = "time budget (N=%d needs about %.0f s, %.0f s left)" % (n, need, left)
                break
            try:
                fl.check_memory(n, runtime, have)
            except Failure as e:
                result["stopped_by"] = "memory: %s" % e
                break
            t = time.monotonic()
            new = fl.add_accounts(out, n, start=have)
            mosq.reload()
            with open(new[-1]) as f:
                last = json.load(f)["mqtt"]
            deadline = time.monotonic() + 15
            while not fl.login_ok("localhost", mosq.port, os.path.join(out, "ca.pem"), last["user"], last["password"]):
                if time.monotonic() > deadline:
                    raise Failure("the broker never accepted the new accounts")
                time.sleep(0.2)
            accounts_s = time.monotonic() - t
            fleet.add_configs(new)
            try:
                up_s = fleet.grow(n, witness.has)
            except Failure as e:
                result["steps"].append({"nodes": n, "error": str(e)})
                result["saturated"] = "start: %s" % e
                break
            start_s_per_node = up_s / (n - have)
            time.sleep(fl.PERIOD_S)  # the last nodes' buffered first reading is out of the way
            meter = fl.CpuMeter(fleet, mosq.proc.pid)
            meter.start()
            t_from = time.monotonic()
            time.sleep(window)
            t_to = time.monotonic()
            cpu = meter.stop()
            time.sleep(DRAIN_S)
            fleet.poll()
            rooms = [nd.room for nd in fleet.nodes]
            d = fl.delivery(witness.readings, rooms, t_from, t_to)
            pids = fleet.pids()
            sample = pids[:: max(1, len(pids) // 50)]  # PSS of 50 nodes is enough, and /proc reads cost
            step = {"nodes": n, "accounts_s": round(accounts_s, 1), "start_s": round(up_s, 1),
                    "delivery": d, "cpu": cpu, "resets": fleet.resets(), "exits": len(fleet.exits),
                    "broker_pss_mb": round(fl.pss_mb(mosq.proc.pid), 1),
                    "pss_mb_per_node": round(sum(fl.pss_mb(p) for p in sample) / max(1, len(sample)), 1)}
            step["sustained"] = _sustained(d) and not fleet.exits
            result["steps"].append(step)
            log("N=%d: %d due, %d lost, p50 %s ms, p99 %s ms; CPU nodes %s broker %s harness %s cores, machine %d%% "
                "busy; %.1f MB per node; started in %.0f s" % (
                    n, d["due"], d["lost"], d["p50_ms"], d["p99_ms"], cpu["nodes_cores"], cpu["broker_cores"],
                    cpu["harness_cores"], 100 * cpu["machine_busy"], step["pss_mb_per_node"], up_s))
            if not step["sustained"]:
                result["saturated"] = _verdict(step)
                break
            result["largest_sustained"] = n
        if result["saturated"] is None and result["steps"] and "cpu" in result["steps"][-1]:
            result["projection"] = _projection(result["steps"][-1])
        if fleet:
            fleet.stop()
            fleet = None
        if not quick and budget_s - (time.monotonic() - t_start) > 40:
            result["micropython_idle"] = _idle_cost_micropython(work, out, mosq)
    finally:
        if fleet:
            fleet.stop()
        if witness:
            witness.close()
        mosq.stop()
        result["seconds"] = round(time.monotonic() - t_start, 1)
        shutil.rmtree(work, ignore_errors=True)
    result["target_met"] = result["largest_sustained"] >= TARGET
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench.fleet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget", type=float, help="seconds (default 300, quick 90)")
    ap.add_argument("--runtime", default="cpython", choices=("cpython", "micropython"))
    ap.add_argument("--steps", help="comma-separated node counts, e.g. 100,250,500")
    a = ap.parse_args(argv)
    steps = tuple(int(x) for x in a.steps.split(",")) if a.steps else None
    try:
        r = run(a.quick, a.budget, a.runtime, steps)
    except Failure as e:
        return report("bench fleet", e)
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
