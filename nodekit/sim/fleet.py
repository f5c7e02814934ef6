"""Many simulated nodes against one broker, as a person would load-test a Pi (make sim NODES=N).

    make sim NODES=200                                   a local broker kit and 200 nodes
    make sim NODES=200 CONFIG=kit/nodes/salon/config.json   200 nodes against that kit's broker

Each node is the real board code (boot.py, main.py, lib/node) in its own
process with its own simulated board (nodekit.sim.simnode.SimNode), its own room
(fleet0001, fleet0002, ...) and its own account from the kit, over TLS. A
witness (the kit's dashboard account) subscribes to maison/+/valeur and, from
the readings' sequence numbers and the nodes' fixed schedule, counts readings
lost and measures how late each one arrives. Ctrl-C stops every node and the
broker.
"""
import argparse
import json
import os
import pathlib
import resource
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho

from nodekit import REPO
from nodekit.board import build
from nodekit.broker import mosquitto, kit
from nodekit.errors import Failure, report
from nodekit.rules import topics
from nodekit.sim import simnode

ROOM_PREFIX = "fleet"
PERIOD_S = 5
STARTING_AT_ONCE = 8  # nodes booting at the same time: more only slows every TLS handshake
MB_PER_NODE = {"cpython": 14, "micropython": 6}  # measured PSS per running node, rounded up
MICROPYTHON_HEAP = "128k"  # enough for the node over TLS from .mpy on the 64-bit VM (96k: MemoryError at config load); not a board figure


def room(i):
    return "%s%04d" % (ROOM_PREFIX, i + 1)


def raise_fd_limit():
    """Every node is a TLS connection to the broker and an open log here; Mosquitto, started
    from this process, inherits the limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def mem_available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return None


def check_memory(n, runtime, running=0):
    need = (n - running) * MB_PER_NODE[runtime]
    avail = mem_available_mb()
    if avail is not None and need > avail * 0.8:
        raise Failure("NODES=%d: about %d MB more needed (%d MB per %s node), %d MB available"
                         % (n, need, MB_PER_NODE[runtime], runtime, avail))


# --- accounts and configs -------------------------------------------------------
def add_accounts(out, n, start=0, period_s=PERIOD_S):
    """Node accounts start..n-1 in the kit (kept if they exist), each with a config.json that
    sends JSON readings (seq, age_ms: losses and delays can be measured) and skips NTP (the
    PC's clock is right). Returns the config paths."""
    paths = []
    for i in range(start, n):
        path = kit.add_node(out, room(i), wifi_ssid="maison", wifi_password="sim-wifi", sensor="sim")
        with open(path) as f:
            cfg = json.load(f)
        cfg.update(payload="json", ntp=False, period_s=period_s)
        with open(path, "w") as f:
            json.dump(cfg, f)
        paths.append(pathlib.Path(path))
    return paths


def local_broker(work):
    """A broker kit on free loopback ports and its Mosquitto, started."""
    out = str(pathlib.Path(work) / "kit")
    s = kit.make_broker(out, host="localhost", port=mosquitto.free_port(), tools_port=mosquitto.free_port(), ws_port=0,
                        local_port=mosquitto.free_port(), bind="127.0.0.1")
    mosq = mosquitto.Mosquitto(os.path.join(out, "mosquitto.conf"), s["port"], str(pathlib.Path(work) / "mosquitto.log"),
                            plain_port=s["local_port"])
    return out, mosq


def kit_of(config_path):
    """The kit folder a node's config.json was written in (OUT/nodes/<room>/config.json)."""
    out = pathlib.Path(config_path).resolve().parent.parent.parent
    if not (out / kit.KIT_FILE).exists():
        raise Failure("CONFIG: %s is not in a broker kit (OUT/nodes/<room>/config.json): the fleet "
                         "needs the kit to add its accounts" % config_path)
    return str(out)


def login_ok(host, port, ca, user, password, timeout=10.0):
    """True when the broker accepts this account over TLS."""
    done = threading.Event()
    result = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fleet-probe-%d" % os.getpid())
    c.tls_set(ca_certs=ca)
    c.username_pw_set(user, password)
    c.on_connect = lambda cl, u, f, rc, p: (result.append(not rc.is_failure), done.set())
    try:
        c.connect(host, port)
    except OSError:
        return False
    c.loop_start()
    done.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return bool(result and result[0])


# --- the witness ------------------------------------------------------------------
class Witness:
    """A paho client (the dashboard account, TLS) that records every reading:
    (room, seq, age_ms, arrival on time.monotonic())."""

    def __init__(self, out, host, port):
        with open(os.path.join(out, "dashboard.json")) as f:
            dash = json.load(f)
        self.readings = []  # list.append is atomic: the paho thread appends, we read
        self.bad = 0
        self._rooms = set()
        self._scanned = 0
        self._ready = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fleet-witness-%d" % os.getpid())
        self.c.tls_set(ca_certs=os.path.join(out, "ca.pem"))
        self.c.username_pw_set(dash["user"], dash["password"])
        self.c.on_message = self._message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.VALUE % "+", qos=1)
        self.c.on_subscribe = lambda *a: self._ready.set()
        self.c.connect(host, port)
        self.c.loop_start()
        if not self._ready.wait(15):
            self.close()
            raise Failure("the broker at %s:%d did not let the dashboard account subscribe" % (host, port))

    def _message(self, c, u, m):
        t = time.monotonic()
        try:
            r = json.loads(m.payload)
            self.readings.append((m.topic.split("/")[1], r["seq"], r["age_ms"], t))
        except (ValueError, KeyError, TypeError):
            self.bad += 1  # a node not sending JSON readings (not one of ours)

    def has(self, room):
        """True once a reading from room has arrived."""
        n = len(self.readings)
        self._rooms.update(r[0] for r in self.readings[self._scanned:n])
        self._scanned = n
        return room in self._rooms

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


# --- the nodes -------------------------------------------------------------------
def node_env(runtime, work):
    """The MicroPython VM runs the board code from .mpy (nodekit.board.build): no compiling at
    each start, as on a board that was deployed with `make deploy`."""
    if runtime != "micropython":
        return {}
    lib = pathlib.Path(work) / "lib"
    build.build(lib)
    return {"NODE_LIB": str(lib), "NODE_PATH": str(lib)}


def hardware(runtime, work):
    """The simulated board compiled to .mpy for the VM (simnode.compile_simboard), else None."""
    return simnode.compile_simboard(pathlib.Path(work) / "simboard") if runtime == "micropython" else None


class Fleet:
    """N simulated boards, started a few at a time, supervised, stopped together."""

    def __init__(self, configs, work, runtime="cpython", heap=None):
        self.configs = list(configs)
        self.work = pathlib.Path(work)
        self.runtime = runtime
        self.heap = heap or (MICROPYTHON_HEAP if runtime == "micropython" else None)
        self.env = node_env(runtime, self.work)
        self.hardware = hardware(runtime, self.work)
        self.nodes = []
        self.exits = {}  # room -> exit status of a node that stopped for good
        (self.work / "boards").mkdir(parents=True, exist_ok=True)

    def add_configs(self, configs):
        self.configs.extend(configs)

    def start_one(self):
        cfg = self.configs[len(self.nodes)]
        name = cfg.parent.name
        board = self.work / "boards" / name
        out = open(self.work / "boards" / (name + ".log"), "wb")
        node = simnode.SimNode(cfg, board, self.runtime, self.heap, output=out, env=self.env, hardware=self.hardware)
        node.room = name
        self.nodes.append(node.start())
        return node

    def grow(self, n, up, timeout_s=None):
        """Start nodes until n run, never more than STARTING_AT_ONCE of them not yet up
        (up(room) -> True once the node delivered a reading). Returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + (timeout_s or 60 + n * 0.5)
        booting = {nd.room for nd in self.nodes if not up(nd.room)}
        next_poll = t0
        while True:
            booting = {r for r in booting if not up(r) and r not in self.exits}
            while len(self.nodes) < n and len(booting) < STARTING_AT_ONCE:
                booting.add(self.start_one().room)
            if len(self.nodes) >= n and not booting:
                return time.monotonic() - t0
            now = time.monotonic()
            if now >= next_poll:  # supervising a thousand boards costs: once a second is enough
                self.poll()
                next_poll = now + 1
            if now > deadline:
                raise Failure("only %d of %d nodes delivered a reading within %.0f s"
                                 % (sum(1 for nd in self.nodes if up(nd.room)), n, now - t0))
            time.sleep(0.02)

    def poll(self):
        """Restart boards that reset (as SimNode does); note nodes that stopped for good."""
        for nd in self.nodes:
            if nd.room not in self.exits:
                rc = nd.poll()
                if rc is not None:
                    self.exits[nd.room] = rc

    def resets(self):
        return sum(nd.resets for nd in self.nodes)

    def pids(self):
        return [nd.proc.pid for nd in self.nodes if nd.proc and nd.proc.poll() is None]

    def stop(self, timeout=10.0):
        """SIGTERM to every board at once, then SIGKILL to what is left; no process stays."""
        for nd in self.nodes:
            if nd.proc and nd.proc.poll() is None:
                try:
                    os.killpg(nd.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for nd in self.nodes:
            if not nd.proc:
                continue
            try:
                nd.proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(nd.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                nd.proc.wait()
            nd.output.close()


# --- measuring --------------------------------------------------------------------
def cpu_seconds(pid):
    """User + system CPU seconds of a process, from /proc (0 if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_mb(pid):
    """Proportional set size (shared pages split between the processes that share them)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class CpuMeter:
    """CPU used by the nodes, the broker and this harness (witness included) between
    start() and stop(), in cores, and how busy the machine was as a whole."""

    def __init__(self, fleet, broker_pid):
        self.fleet = fleet
        self.broker_pid = broker_pid

    def _sample(self):
        pids = self.fleet.pids()
        return (time.monotonic(), sum(cpu_seconds(p) for p in pids), cpu_seconds(self.broker_pid),
                sum(os.times()[:2]), machine_busy(), pids)

    def start(self):
        self.a = self._sample()

    def stop(self):
        b = self._sample()
        a = self.a
        dt = b[0] - a[0]
        same = set(a[5]) == set(b[5])  # a node restarted in between: its CPU is not comparable
        busy = (b[4][0] - a[4][0]) / max(1, b[4][1] - a[4][1])
        return {"nodes_cores": round((b[1] - a[1]) / dt, 3) if same else None,
                "broker_cores": round((b[2] - a[2]) / dt, 3),
                "harness_cores": round((b[3] - a[3]) / dt, 3),
                "machine_busy": round(busy, 3), "cores": os.cpu_count()}


def delivery(readings, rooms, t_from, t_to, period_s=PERIOD_S):
    """Readings due in [t_from, t_to) on each node's schedule: how many were lost, and how
    late the others arrived.

    A node reads at t0 + k * period on its tick clock (which, on this PC, runs with
    time.monotonic), and numbers its readings 1, 2, ... (seq). For reading seq,
    arrival - (seq - 1) * period - age_ms = t0 + (lateness of that reading) + (transit):
    its smallest value over the node's readings is taken as the node's t0. A reading is
    then due at t0 + (seq - 1) * period and its delay is arrival - due: the node waking
    late, its own queue (age_ms), TLS, the broker and the witness, all together,
    measured from the node's best reading (so the few ms of an idle loopback trip are
    not counted)."""
    per = {}
    for r, seq, age, t in list(readings):
        per.setdefault(r, []).append((seq, age, t))
    lost = 0
    delays = []
    silent = 0
    for r in rooms:
        got = per.get(r)
        if not got:
            silent += 1
            lost += int((t_to - t_from) // period_s)
            continue
        t0 = min(t - (seq - 1) * period_s - age / 1000 for seq, age, t in got)
        first = max(1, int(-(-(t_from - t0) // period_s)) + 1)  # first seq due at or after t_from
        last = int((t_to - t0) // period_s) + 1 if t_to > t0 else 0  # last seq due before t_to
        arrived = {}
        for seq, age, t in got:
            if first <= seq <= last and seq not in arrived:
                arrived[seq] = t - (t0 + (seq - 1) * period_s)
        lost += (last - first + 1) - len(arrived) if last >= first else 0
        delays.extend(arrived.values())
    delays.sort()

    def pct(p):
        return round(1000 * delays[min(len(delays) - 1, int(p * len(delays)))], 1) if delays else None

    return {"due": len(delays) + lost, "lost": lost, "silent_nodes": silent, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "max_ms": round(1000 * delays[-1], 1) if delays else None}


# --- make sim NODES=N ---------------------------------------------------------------
def _ms(v):
    return "-" if v is None else "%.0f" % v


def _status(fleet, witness, meter, since, rooms):
    now = time.monotonic()
    d = delivery(witness.readings, rooms, since, now - 1.0)
    c = meter.stop()
    meter.start()
    up = len({r[0] for r in witness.readings})
    print("fleet: %d/%d nodes up, %d readings due, %d lost, delivery p50 %s ms p99 %s ms; CPU: nodes %s, "
          "broker %s, this tool %s cores of %d (machine %d%% busy)"
          % (up, len(rooms), d["due"], d["lost"], _ms(d["p50_ms"]), _ms(d["p99_ms"]), c["nodes_cores"], c["broker_cores"],
             c["harness_cores"], c["cores"], 100 * c["machine_busy"]), flush=True)


def run_sim(n, runtime="cpython", heap=None, config=None, work=None):
    """make sim NODES=N: start, report every period until Ctrl-C, stop everything."""
    check_memory(n, runtime)
    raise_fd_limit()
    work = pathlib.Path(work or REPO / ".sim" / "fleet")
    work.mkdir(parents=True, exist_ok=True)
    mosq = witness = fleet = None
    try:
        if config:
            if not pathlib.Path(config).exists():
                raise Failure("CONFIG=%s" % config, "no such file")
            out = kit_of(config)
        else:
            if not mosquitto.mosquitto_path():
                raise Failure("mosquitto", "not installed (make setup installs it as root, or: "
                              "sudo apt-get install mosquitto mosquitto-clients)")
            out, mosq = local_broker(work)
        t = time.monotonic()
        configs = add_accounts(out, n)
        print("fleet: %d accounts and configs in %s/nodes (%.1f s)" % (n, os.path.relpath(out), time.monotonic() - t))
        s = kit.load_settings(out)
        with open(configs[0]) as f:
            first = json.load(f)["mqtt"]
        if mosq:
            mosq.start()
        elif not login_ok(first["host"], first["port"], os.path.join(out, "ca.pem"), first["user"], first["password"]):
            raise Failure("the broker at %s:%d refuses the fleet's accounts: install the kit on it "
                             "(sudo make broker-install OUT=%s, or copy passwd and acl and reload Mosquitto), "
                             "then run again" % (first["host"], first["port"], os.path.relpath(out)))
        witness = Witness(out, first["host"], s["tools_port"])
        where = "here" if first["host"] in ("localhost", "127.0.0.1") else "pi"
        print("fleet: watch the readings in another terminal (the password stays in the option files):\n\n"
              "  XDG_CONFIG_HOME=%s mosquitto_sub -v -t '%s'\n"
              % (os.path.relpath(os.path.join(out, kit.CLIENTS, where)), topics.VALUE % "+"))
        fleet = Fleet(configs, work, runtime, heap)
        rooms = [c.parent.name for c in configs]
        print("fleet: starting %d nodes on %s (%d at a time); logs in %s/boards; Ctrl-C stops them"
              % (n, runtime, STARTING_AT_ONCE, os.path.relpath(work)), flush=True)
        took = fleet.grow(n, witness.has)
        print("fleet: %d nodes up in %.1f s" % (n, took), flush=True)
        meter = CpuMeter(fleet, mosq.proc.pid if mosq else 0)
        meter.start()
        since = time.monotonic()
        while True:
            for _ in range(PERIOD_S):
                time.sleep(1)
                fleet.poll()
                if mosq and mosq.proc.poll() is not None:
                    raise Failure("mosquitto stopped; its log is in %s" % mosq.log_path)
            _status(fleet, witness, meter, since, rooms)
            if fleet.exits:
                print("fleet: %d nodes stopped for good (exit status %s); see their logs"
                      % (len(fleet.exits), sorted(set(fleet.exits.values()))))
    except KeyboardInterrupt:
        print("\nfleet: stopping")
        return 0
    finally:
        if fleet:
            fleet.stop()
        if witness:
            witness.close()
        if mosq:
            mosq.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fleet", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", required=True)
    ap.add_argument("--runtime", default="cpython", choices=simnode.RUNTIMES)
    ap.add_argument("--heap")
    ap.add_argument("--config")
    ap.add_argument("--work", help="where the kit, boards and logs go (default .sim/fleet)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the nodes and broker on kill too
    try:
        if not a.nodes.isdigit() or int(a.nodes) < 1:
            raise Failure("NODES: expected a whole number of nodes, 1 or more, got %r" % a.nodes)
        return run_sim(int(a.nodes), a.runtime, a.heap, a.config, a.work)
    except Failure as e:
        return report("make sim", e)


if __name__ == "__main__":
    sys.exit(main())
