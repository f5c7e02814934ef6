"""What every measurement of `make bench` stands on: one broker kit and the real Mosquitto
running it (TLS port and plaintext localhost port), node configs written through the kit,
simulated boards (nodekit.sim.simnode.SimNode) for the node and for the scripts in bench/, an
independent paho-mqtt client that watches and commands, and tshark captures on `lo`.
"""
import contextlib
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time

import paho.mqtt.client as paho

from nodekit import REPO
from nodekit.board import build
from nodekit.broker import kit
from nodekit.broker.mosquitto import Mosquitto, free_port
from nodekit.errors import Failure
from nodekit.rules import topics
from nodekit.sim import simnode

SCRIPTS = REPO / "bench"  # naive.py and bare.py: MicroPython scripts run as a board's main


def pct(values, p):
    """The p-th percentile (nearest rank) of a list of numbers."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values, digits=2):
    """p50, p99, max, mean and count of a list of numbers (ms)."""
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None, "mean": None}
    r = lambda v: round(v, digits)  # noqa: E731
    return {"n": len(values), "p50": r(statistics.median(values)), "p99": r(pct(values, 99)),
            "max": r(max(values)), "mean": r(statistics.fmean(values))}


class Watcher:
    """An independent paho-mqtt client (the kit's dashboard account, over TLS) that records
    the readings, LED states and stats of every room with the time they arrived, and sends
    commands."""

    def __init__(self, rig):
        self.lock = threading.Condition()
        self.seen = {}  # topic -> [(perf_counter, wall time, payload, retained)]
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-%d" % time.monotonic_ns())
        self.c.username_pw_set(rig.dashboard["user"], rig.dashboard["password"])
        self.c.tls_set(ca_certs=rig.ca)
        subscribed = queue.Queue()
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: subscribed.put(True)
        self.c.connect("localhost", rig.settings["tools_port"])
        self.c.loop_start()
        # Not the command topics (led/set): their copy would queue behind the broker's next
        # write to this client, and Mosquitto's sockets wait for an ACK (Nagle) before sending it.
        for topic in (t % "+" for t in (topics.VALUE, topics.LED, topics.STATS)):
            self.c.subscribe(topic, qos=0)
            subscribed.get(timeout=10)

    def _on_message(self, c, u, m):
        now, wall = time.perf_counter(), time.time()
        with self.lock:
            self.seen.setdefault(m.topic, []).append((now, wall, m.payload, m.retain))
            self.lock.notify_all()

    def count(self, topic):
        with self.lock:
            return len(self.seen.get(topic, ()))

    def wait(self, topic, n=1, timeout=15.0, where=None, since=0):
        """Wait until `n` messages on topic (from index `since`, matching where) have arrived;
        return the last of them, or None at the timeout."""
        deadline = time.perf_counter() + timeout
        with self.lock:
            while True:
                msgs = [m for m in self.seen.get(topic, ())[since:] if where is None or where(m)]
                if len(msgs) >= n:
                    return msgs[n - 1]
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self.lock.wait(min(left, 0.5))

    def publish(self, topic, payload, qos=1, retain=False):
        """Publish and return (perf_counter, wall time) taken just before the call."""
        t, wall = time.perf_counter(), time.time()
        self.c.publish(topic, payload, qos=qos, retain=retain)
        return t, wall

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Board:
    """One simulated board running the node (or a script from bench/), output in a log file."""

    def __init__(self, rig, cfg_path, runtime, name, heap=None, script=None, lib=None, pin_log=False,
                 hw_mpy=False, env=None):
        self.dir = rig.root / "boards" / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.log_path = self.dir.with_suffix(".log")
        self.pin_log = self.dir / "pins.log" if pin_log else None
        env = dict(env or {})  # more of the simulated board's settings (SIMBOARD_*)
        if self.pin_log:
            env["SIMBOARD_PIN_LOG"] = str(self.pin_log)
        path = [str(REPO / ".deps")]
        if lib:  # a compiled lib/ and umqtt (nodekit.board.build): the node runs from .mpy
            env["NODE_LIB"] = str(lib)
            path = [str(lib)]
        if script:  # bench/<script>.py (or its .mpy in lib) as the board's main
            root = rig.root / "scripts" / script
            root.mkdir(parents=True, exist_ok=True)
            (root / "boot.py").write_text("# bench: nothing to do at boot\n")
            (root / "main.py").write_text("import %s\n" % script)
            env["NODE_REPO"] = str(root)
            if not lib:
                path.insert(0, str(SCRIPTS))
        env["NODE_PATH"] = ":".join(path)
        self._out = open(self.log_path, "wb")
        self.t_start = time.perf_counter()
        # hw_mpy: the simulated machine and network modules compiled, as a board has them in
        # firmware, so their compilation does not weigh on the node's heap.
        self.sim = simnode.SimNode(cfg_path, self.dir, runtime, heap=heap, output=self._out, env=env,
                               hardware=rig.hardware() if hw_mpy else None).start()

    def log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.sim.poll() is None

    def pins(self):
        """[(wall time s, pin, level)] from the simulated board's pin log."""
        rows = []
        if self.pin_log and self.pin_log.exists():
            for line in self.pin_log.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 3:
                    rows.append((int(parts[2]) / 1e9, parts[0], int(parts[1])))
        return rows

    def local_port(self, broker_port, timeout=10.0):
        """The node's own TCP port on its connection to broker_port (from ss, by pid)."""
        deadline = time.monotonic() + timeout
        pid = self.sim.proc.pid
        while time.monotonic() < deadline:
            out = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :%d )" % broker_port],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                m = re.search(r"\S+:(\d+)\s+\S+:%d\s" % broker_port, line)
                if m and "pid=%d," % pid in line:
                    return int(m.group(1))
            time.sleep(0.1)
        raise Failure("cannot find the node's connection to port %d (ss)" % broker_port)

    def stop(self):
        self.sim.stop()
        self._out.close()


class Rig:
    """A broker kit on free loopback ports and the Mosquitto running it, for one bench run."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.out = str(self.root / "kit")
        self.settings = kit.make_broker(self.out, host="localhost", port=free_port(), tools_port=free_port(),
                                        ws_port=free_port(),
                                        ws_tls=False, local_port=free_port(), bind="127.0.0.1")
        self.port = self.settings["port"]
        self.local_port = self.settings["local_port"]
        self.ca = os.path.join(self.out, "ca.pem")
        with open(os.path.join(self.out, "dashboard.json")) as f:
            self.dashboard = json.load(f)
        self.mosq = Mosquitto(os.path.join(self.out, "mosquitto.conf"), self.port,
                              str(self.root / "mosquitto.log"), plain_port=self.local_port)
        self.mosq.start()
        self.watcher = Watcher(self)
        self.boards = []
        self._lib = None
        self._twins = None  # the frozen stand-ins the VM has in its own image (simnode.frozen_twins)

    def configs(self, rooms, **common):
        """Write one config per room through the kit (one broker reload for all); returns
        {room: path}. `common` changes apply to each (dotted keys as a__b)."""
        paths = {r: kit.add_node(self.out, r, wifi_ssid="maison", wifi_password="bench-wifi", sensor="sim")
                 for r in rooms}
        self.mosq.reload()
        self._wait_login(paths[rooms[-1]])
        for r in rooms:
            self.edit(paths[r], **common)
        return paths

    def edit(self, path, **changes):
        """A copy of a config with changes, e.g. period_s=0.2, mqtt__tls=False (plaintext)."""
        with open(path) as f:
            cfg = json.load(f)
        if changes.pop("plaintext", False):
            changes.update(mqtt__tls=False, mqtt__port=self.local_port)
        for dotted, value in changes.items():
            d = cfg
            keys = dotted.split("__")
            for k in keys[:-1]:
                d = d.setdefault(k, {})
            d[keys[-1]] = value
        with open(path, "w") as f:
            json.dump(cfg, f)
        return pathlib.Path(path)

    def variant(self, room, name, **changes):
        """Another config.json for the same room's account, in its own folder (a board reads
        config.json from its current folder; ca.der is copied beside it)."""
        src = pathlib.Path(self.out) / "nodes" / room
        dst = self.root / "configs" / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "ca.der"):
            shutil.copy(src / f, dst / f)
        return self.edit(dst / "config.json", **changes)

    def _wait_login(self, cfg_path):
        with open(cfg_path) as f:
            m = json.load(f)["mqtt"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ok = queue.Queue()
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="probe-%d" % time.monotonic_ns())
            c.username_pw_set(m["user"], m["password"])
            c.on_connect = lambda c, u, f, rc, p=None: ok.put(not rc.is_failure)
            try:
                c.connect("localhost", self.local_port)
                c.loop_start()
                try:
                    if ok.get(timeout=2):
                        return
                except queue.Empty:
                    pass
            except OSError:
                pass
            finally:
                c.loop_stop()
                c.disconnect()
            time.sleep(0.1)
        raise Failure("the broker never accepted the bench's node accounts")

    def lib(self):
        """The node's lib/ and umqtt.simple compiled to .mpy (once per run), with bench/*.py."""
        if self._lib is None:
            d = self.root / "mpy"
            build.build(d)
            for script in ("naive", "bare"):
                r = subprocess.run([build.mpy_cross_path(), "-o", str(d / (script + ".mpy")), "-s", script + ".py",
                                    str(SCRIPTS / (script + ".py"))], capture_output=True, text=True)
                if r.returncode:
                    raise Failure("mpy-cross failed on bench/%s.py: %s" % (script, r.stderr.strip()))
            self._lib = d
        return self._lib

    def hardware(self):
        """The simulated board (start script, hardware and frozen stand-ins) compiled to .mpy."""
        if self._twins is None:
            self._twins = simnode.frozen_twins()
        return simnode.compile_simboard(self.root / "hardware", skip=self._twins)

    def board(self, cfg_path, runtime, name, **kw):
        b = Board(self, cfg_path, runtime, name, **kw)
        self.boards.append(b)
        return b

    def stop(self):
        for b in self.boards:
            with contextlib.suppress(Exception):
                b.stop()
        for p in list(_CAPTURES):
            _stop_capture(p)
        self.watcher.close()
        self.mosq.stop()


@contextlib.contextmanager
def capture(pcap, ports):
    """tshark capturing the given TCP ports on `lo` into pcap (root needed), started and stopped."""
    if not shutil.which("tshark"):
        raise Failure("tshark is not installed (apt-get install tshark)")
    flt = " or ".join("tcp port %d" % p for p in ports)
    err_path = str(pcap) + ".err"
    with open(err_path, "wb") as err:
        p = subprocess.Popen(["tshark", "-i", "lo", "-f", flt, "-w", str(pcap)],
                             stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    _CAPTURES.add(p)
    try:
        deadline = time.monotonic() + 20
        while "Capture started" not in pathlib.Path(err_path).read_text(errors="replace"):
            if p.poll() is not None or time.monotonic() > deadline:
                said = pathlib.Path(err_path).read_text(errors="replace").strip()
                raise Failure("tshark cannot capture on lo (run as root?): %s" % said[-300:])
            time.sleep(0.05)
        size = os.path.getsize(pcap)
        while os.path.getsize(pcap) == size:  # started a little before it really catches packets
            if time.monotonic() > deadline:
                raise Failure("tshark caught nothing on ports %s" % (ports,))
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
            time.sleep(0.1)
        yield pcap
    finally:
        _stop_capture(p)


_CAPTURES = set()  # running tshark processes, stopped by Rig.stop() if a thread left one behind


def _stop_capture(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)  # as Ctrl-C: tshark finishes the file
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # tshark and its dumpcap
            p.wait()
    _CAPTURES.discard(p)


def tshark(pcap, decode, display, *fields):
    """Rows of fields (each a list of strings: a frame may carry several records or packets)."""
    args = ["tshark", "-r", str(pcap), "-Y", display, "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=,", "-E", "separator=/t"]
    for d in decode:
        args += ["-d", d]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise Failure("tshark -r failed: %s" % r.stderr.strip()[-300:])
    return [[v.split(",") if v else [] for v in line.split("\t")] for line in r.stdout.splitlines()]
