"""make sim NODES=N loads a broker with a fleet of nodes, loses no reading and leaves no process behind.

A fleet of simulated nodes (make sim NODES=N): every node publishes, no reading is
lost, and stopping leaves no process behind."""
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

from nodekit import REPO
from nodekit.sim import fleet


def _processes_mentioning(text):
    """PIDs of live processes whose command line or environment mentions text."""
    found = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if text.encode() in (d / "cmdline").read_bytes() + (d / "environ").read_bytes():
                if b"State:\tZ" not in (d / "status").read_bytes():
                    found.append(int(d.name))
        except OSError:
            pass
    return found


def test_every_node_of_a_fleet_publishes_and_nothing_is_lost(broker, runtime, tmp_path):
    n, period = 8, 1
    configs = fleet.add_accounts(broker.out, n, period_s=period)
    broker.mosq.reload()
    broker._wait_login(configs[-1].parent.name)
    witness = fleet.Witness(broker.out, "localhost", broker.port)
    f = fleet.Fleet(configs, tmp_path / "fleet", runtime)
    try:
        f.grow(n, witness.has, timeout_s=90)
        time.sleep(period)
        t_from = time.monotonic()
        time.sleep(4 * period)
        t_to = time.monotonic()
        time.sleep(1.5)  # the last readings due in the window still arrive
        d = fleet.delivery(witness.readings, [c.parent.name for c in configs], t_from, t_to, period)
        pids = f.pids()
    finally:
        f.stop()
        witness.close()
    assert len(pids) == n and not f.exits
    assert d["silent_nodes"] == 0, d
    assert d["due"] >= 3 * n, d
    assert d["lost"] == 0, d
    assert {r[0] for r in witness.readings} == {c.parent.name for c in configs}
    assert _processes_mentioning(str(tmp_path / "fleet")) == []


def _run_until(argv, pattern, timeout, cwd=REPO):
    """Start argv; return (process, lines so far) once a line contains pattern."""
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        if pattern in seen[-1]:
            return p, seen
    p.kill()
    p.wait()
    raise AssertionError("no line with %r within %d s; it said:\n%s" % (pattern, timeout, "".join(seen)))


def test_make_sim_nodes_runs_a_fleet_and_ctrl_c_stops_everything(tmp_path):
    work = tmp_path / "sim"
    # nodekit.sim.fleet is what `make sim NODES=5` runs (through nodekit.sim.simnode); --work keeps it in tmp_path.
    p, seen = _run_until([sys.executable, "-m", "nodekit.sim.fleet", "--nodes", "5", "--work", str(work)],
                         "fleet: 5/5 nodes up", timeout=90)
    try:
        assert any("5 nodes up in" in line for line in seen), seen
        assert _processes_mentioning(str(work)), "no node or broker found running"
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(30)
    assert rc == 0
    assert _processes_mentioning(str(work)) == []
    # The status line counted readings on the nodes' schedule: none lost.
    status = [line for line in seen if "nodes up," in line][-1]
    assert " 0 lost" in status, status


def test_nodes_must_be_a_number():
    r = subprocess.run([sys.executable, "-m", "nodekit.sim.fleet", "--nodes", "lots"], cwd=REPO,  # make sim NODES=lots
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == "make sim: NODES: expected a whole number of nodes, 1 or more, got 'lots'"
    assert "Traceback" not in r.stdout + r.stderr


def test_a_fleet_against_a_kits_broker_needs_its_accounts_installed(broker, tmp_path):
    cfg = broker.node_config("salon")
    argv = [sys.executable, "-m", "nodekit.sim.fleet", "--nodes", "3", "--config", str(cfg), "--work", str(tmp_path / "w")]
    # The fleet's accounts are added to the kit, but this broker has not re-read its files.
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=90)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refuses the fleet's accounts" in r.stderr and "broker-install" in r.stderr, r.stderr
    with open(os.path.join(broker.out, "nodes", "fleet0003", "config.json")) as f:
        assert json.load(f)["mqtt"]["port"] == broker.port
    broker.mosq.reload()  # as `sudo make broker-install` would on the Pi
    broker._wait_login("fleet0003")
    p, seen = _run_until(argv, "fleet: 3/3 nodes up", timeout=90)
    p.send_signal(signal.SIGINT)
    assert p.wait(30) == 0
    assert _processes_mentioning(str(tmp_path / "w")) == []
