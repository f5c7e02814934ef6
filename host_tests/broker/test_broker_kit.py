"""The Pi's broker, made by make broker and make node, lets in only its accounts, each on its own topics, over TLS.

The broker kit (make broker, make node) proved against a real Mosquitto by clients that
are not the node: paho-mqtt, mosquitto_pub, openssl and tshark. Who gets in, who may read
and write what, which TLS versions, WebSockets, the bridge to a remote broker, what a
Wireshark capture shows, and what a second `make broker` keeps.

Absence is proved by order: a message that must not arrive is sent before one that must,
on the same path; once the second is in, the first would have been too."""
import getpass
import json
import os
import pathlib
import queue
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodekit import REPO
from nodekit.broker import certs, install, kit, passwd
from nodekit.broker.mosquitto import free_port
from nodekit.errors import Failure
from witness import capture, tshark

TIMEOUT = 15.0


# --- an independent MQTT client -------------------------------------------------------
class Client:
    """A paho-mqtt 2 client that records how its connection ended up and what it receives."""

    def __init__(self, port, user=None, password=None, ca=None, cert=None, key=None, transport="tcp",
                 client_id=None):
        self.events = queue.Queue()  # ("connack", reason) or ("lost", reason)
        self.acks = queue.Queue()
        self.messages = queue.Queue()
        self.received = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, transport=transport,
                             client_id=client_id or "probe-%d" % time.monotonic_ns())
        self.c.reconnect_delay_set(30, 30)  # one attempt is what a test looks at
        if user is not None:
            self.c.username_pw_set(user, password)
        if ca:
            self.c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        self.c.on_connect = lambda c, u, f, rc, p: self.events.put(("connack", rc))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.events.put(("lost", rc))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.acks.put(rcs)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.error = None
        try:
            self.c.connect("localhost", port, keepalive=30)
        except OSError as e:  # ssl.SSLError included: a refusal during the handshake
            self.error = e
            return
        self.c.loop_start()

    def outcome(self, timeout=TIMEOUT):
        """'accepted', or why not: the CONNACK's refusal, the lost connection, the TLS error."""
        if self.error is not None:
            return "error: %s" % self.error
        try:
            kind, rc = self.events.get(timeout=timeout)
        except queue.Empty:
            return "no answer"
        if kind == "connack" and not rc.is_failure:
            return "accepted"
        return "%s: %s" % ("refused" if kind == "connack" else "lost", rc)

    def subscribe(self, *topics):
        codes = []
        for t in topics:
            self.c.subscribe(t, qos=1)
            codes += self.acks.get(timeout=TIMEOUT)
        return codes

    def publish(self, topic, payload, qos=1, retain=False):
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(TIMEOUT)

    def next(self, timeout=TIMEOUT):
        """The next message received, recorded in self.received."""
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("nothing received within %.0f s; so far: %r" % (timeout, self.received))
        self.received.append(m)
        return m

    def until(self, topic, timeout=TIMEOUT):
        """Receive up to the first message on topic; return everything received so far."""
        deadline = time.monotonic() + timeout
        while not self.received or self.received[-1][0] != topic:
            self.next(max(0.1, deadline - time.monotonic()))
        return list(self.received)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def clients():
    made = []

    def make(*a, **kw):
        c = Client(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def login(make_client, port, user, password, ca, timeout=10.0):
    """A client accepted by the broker, retried while a SIGHUP reload is under way."""
    deadline = time.monotonic() + timeout
    while True:
        c = make_client(port, user, password, ca=ca)
        result = c.outcome()
        if result == "accepted":
            return c
        if time.monotonic() > deadline:
            raise AssertionError("%s was never accepted: %s" % (user, result))
        time.sleep(0.1)


def node_password(b, room):
    with open(b.node_config(room)) as f:
        return json.load(f)["mqtt"]["password"]


def add_account(b, user, acl=()):
    """An account written straight into a running kit (password file and ACL), then reloaded."""
    pw = passwd.new_password()
    with open(os.path.join(b.out, "passwd"), "a") as f:
        f.write(passwd.hash_line(user, pw) + "\n")
    if acl:
        with open(os.path.join(b.out, "acl"), "a") as f:
            f.write("\nuser %s\n%s\n" % (user, "\n".join(acl)))
    b.mosq.reload()
    return pw


def mosquitto_pub(port, *args, payload="21.5", password=None):
    """mosquitto_pub as an independent client: (exit code, what it printed). The password goes
    in an option file ($XDG_CONFIG_HOME/mosquitto_pub), never in the process's arguments."""
    env = None
    if password is not None:
        d = tempfile.mkdtemp(prefix="pub-options-")
        fd = os.open(os.path.join(d, "mosquitto_pub"), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("-P %s\n" % password)
        env = dict(os.environ, XDG_CONFIG_HOME=d)
    try:
        r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "-q", "1", "-t", "maison/salon/valeur",
                            "-m", payload, "-i", "pub-%d" % time.monotonic_ns()] + list(args),
                           capture_output=True, text=True, timeout=30, env=env)
    finally:
        if env:
            shutil.rmtree(env["XDG_CONFIG_HOME"])
    return r.returncode, r.stdout + r.stderr


def client_pem(b, room, dest):
    """The node's client certificate and key (DER in the kit) as PEM files for OpenSSL clients."""
    ndir = os.path.join(b.out, "nodes", room)
    cert, key = str(dest / (room + ".pem")), str(dest / (room + ".key"))
    certs.write_cert(cert, certs.load_cert(os.path.join(ndir, "client.der")))
    with open(os.path.join(ndir, "client.key.der"), "rb") as f:
        certs.write_key(key, serialization.load_der_private_key(f.read(), None))
    return cert, key


# --- 1. who gets in ---------------------------------------------------------------------
def test_anonymous_and_wrong_password_are_refused(broker, clients):
    dash = broker.dashboard
    for port, ca in ((broker.port, broker.ca), (broker.local_port, None)):
        assert clients(port, ca=ca).outcome() == "refused: Not authorized", port
        assert clients(port, dash["user"], "not-the-password", ca=ca).outcome() == "refused: Not authorized", port
        assert clients(port, "nobody", dash["password"], ca=ca).outcome() == "refused: Not authorized", port
        assert clients(port, dash["user"], dash["password"], ca=ca).outcome() == "accepted", port  # the control
    # The same, seen by Mosquitto's own client.
    tls = ["--cafile", broker.ca]
    for port, extra in ((broker.port, tls), (broker.local_port, [])):
        for who, pw in (([], None), (["-u", dash["user"]], "not-the-password")):
            rc, said = mosquitto_pub(port, *(extra + who), password=pw)
            assert rc != 0 and "not authorised" in said, (port, who, said)
        rc, said = mosquitto_pub(port, *(extra + ["-u", dash["user"]]), password=dash["password"])
        assert rc == 0, said


def test_client_certificates_are_required_and_name_the_user(make_broker, clients, tmp_path):
    b = make_broker(client_certs=True)
    b.node_config("salon")
    b.node_config("cuisine")
    cert, key = client_pem(b, "salon", tmp_path)
    dash = b.dashboard
    # No certificate: refused even with the dashboard's valid password.
    assert clients(b.port, dash["user"], dash["password"], ca=b.ca).outcome() != "accepted"
    rc, said = mosquitto_pub(b.port, "--cafile", b.ca, "-u", dash["user"], password=dash["password"])
    assert rc != 0, said
    assert "peer did not return a certificate" in b.mosq.log()
    # A certificate from another CA, with the CN of a real node: refused.
    other_key = certs.new_key()
    other_ca = certs.make_ca("Another CA", other_key)
    forged_key = certs.new_key()
    certs.write_cert(tmp_path / "forged.pem", certs.issue(other_key, other_ca, "salon", forged_key, 30, server=False))
    certs.write_key(tmp_path / "forged.key", forged_key)
    forged = clients(b.port, ca=b.ca, cert=str(tmp_path / "forged.pem"), key=str(tmp_path / "forged.key"))
    assert forged.outcome() != "accepted"
    # salon's certificate, claiming to be cuisine: Mosquitto takes the user name from the CN.
    w = b.witness("maison/#")  # the dashboard, on the tools' port (no certificate needed there)
    c = clients(b.port, "cuisine", "anything", ca=b.ca, cert=cert, key=key, client_id="salon-cert")
    assert c.outcome() == "accepted"
    c.publish("maison/cuisine/valeur", b"forged")
    c.publish("maison/salon/valeur", b"21.5")
    assert w.next("maison/salon/valeur")[1] == b"21.5"
    assert [m[0] for m in w.seen] == ["maison/salon/valeur"], w.seen
    # ... and its client id from the user name: the id it asked for is not kept.
    assert "as salon (p2, c1, k30, u'salon')" in b.mosq.log()
    assert "as salon-cert" not in b.mosq.log()
    # mosquitto_pub with the same certificate and no user name at all.
    rc, said = mosquitto_pub(b.port, "--cafile", b.ca, "--cert", cert, "--key", key, payload="22.5")
    assert rc == 0, said
    assert w.next("maison/salon/valeur")[1] == b"22.5"


# --- 2. TLS versions ----------------------------------------------------------------------
def _handshake(port, ca, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    # OpenSSL 3 refuses TLS 1.1 itself at its default security level: lower it so that the
    # ClientHello goes out and the answer is the server's.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    try:
        with socket.create_connection(("localhost", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.version()
    except ssl.SSLError as e:
        return e.reason


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused_by_the_server(make_broker):
    b = make_broker(ws_tls=True)
    for port in (b.port, b.settings["ws_port"]):
        # An alert received from the server, not a local refusal (NO_PROTOCOLS_AVAILABLE, ...).
        # Mosquitto's MQTT listener answers protocol_version, libwebsockets' internal_error.
        refusal = _handshake(port, b.ca, ssl.TLSVersion.TLSv1_1)
        assert refusal in ("TLSV1_ALERT_PROTOCOL_VERSION", "TLSV1_ALERT_INTERNAL_ERROR"), (port, refusal)
        assert _handshake(port, b.ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2", port  # the same context, 1.2
    assert _handshake(b.port, b.ca, ssl.TLSVersion.TLSv1_1) == "TLSV1_ALERT_PROTOCOL_VERSION"
    assert "unsupported protocol" in b.mosq.log()
    # openssl s_client as a second opinion: the server's alert 70 (protocol_version).
    r = subprocess.run(["openssl", "s_client", "-connect", "localhost:%d" % b.port, "-tls1_1",
                        "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", b.ca], input=b"", capture_output=True, timeout=30)
    assert r.returncode != 0 and b"SSL alert number 70" in r.stderr, r.stderr


# --- 3. ACL -------------------------------------------------------------------------------
def test_a_node_writes_only_in_its_own_room(broker, clients):
    salon_pw, cuisine_pw = node_password(broker, "salon"), node_password(broker, "cuisine")
    dash = broker.witness("maison/#")
    cuisine = login(clients, broker.port, "cuisine", cuisine_pw, broker.ca)
    cuisine.subscribe("ctrlled", "maison/cuisine/led/set")
    salon = login(clients, broker.port, "salon", salon_pw, broker.ca)
    for topic in ("maison/cuisine/valeur", "maison/cuisine/status", "maison/cuisine/led/set", "ctrlled",
                  "maison/valeur", "$SYS/broker/version",
                  # its own room, but not a topic a node publishes: no store for retained junk
                  "maison/salon/junk", "maison/salon/valeur/x", "homeassistant/sensor/maison_salon/other/config"):
        salon.publish(topic, b"forged")
    salon.publish("maison/salon/valeur", b"21.5")
    assert dash.next("maison/salon/valeur")[1] == b"21.5"
    assert [m[0] for m in dash.seen] == ["maison/salon/valeur"], dash.seen
    broker.witness().publish("ctrlled", b"1")  # the dashboard may
    assert cuisine.until("ctrlled") == [("ctrlled", b"1")]


def test_a_node_reads_only_ctrlled_and_its_own_commands(broker, clients):
    salon_pw, cuisine_pw = node_password(broker, "salon"), node_password(broker, "cuisine")
    dash = broker.witness("maison/#")
    salon = login(clients, broker.port, "salon", salon_pw, broker.ca)
    salon.subscribe("#", "$SYS/#", "maison/cuisine/valeur")
    cuisine = login(clients, broker.port, "cuisine", cuisine_pw, broker.ca)
    cuisine.publish("maison/cuisine/valeur", b"19.5")
    cuisine.publish("maison/cuisine/led", b"1", retain=True)
    assert dash.next("maison/cuisine/led")[1] == b"1"  # the broker took both
    assert dash.next("maison/cuisine/valeur")[1] == b"19.5"
    dash.publish("maison/cuisine/led/set", b"1")
    dash.publish("maison/salon/led/set", b"toggle")
    dash.publish("ctrlled", b"0")
    got = salon.until("ctrlled")
    # $SYS/broker/version (readable by everyone) may come first, retained, from the $SYS/# subscription.
    assert [m for m in got if m[0] != "$SYS/broker/version"] == \
        [("maison/salon/led/set", b"toggle"), ("ctrlled", b"0")], got


def test_the_dashboard_reads_every_room_and_commands_but_cannot_forge_readings(broker, clients):
    salon_pw, cuisine_pw = node_password(broker, "salon"), node_password(broker, "cuisine")
    dash = broker.witness("maison/#", "$SYS/broker/uptime")
    salon = login(clients, broker.port, "salon", salon_pw, broker.ca)
    cuisine = login(clients, broker.port, "cuisine", cuisine_pw, broker.ca)
    for node in (salon, cuisine):
        node.subscribe("ctrlled", "maison/+/led/set")
    salon.publish("maison/salon/valeur", b"21.5")
    cuisine.publish("maison/cuisine/valeur", b"19.5")
    assert dash.next("maison/salon/valeur")[1] == b"21.5"
    assert dash.next("maison/cuisine/valeur")[1] == b"19.5"
    assert dash.next("$SYS/broker/uptime", timeout=20)  # $SYS too
    dash.publish("maison/salon/valeur", b"99")  # refused: readings come from nodes only
    dash.publish("maison/salon/status", b"offline")
    dash.publish("maison/cuisine/led/set", b"1")
    dash.publish("ctrlled", b"1")
    assert dash.next("maison/cuisine/led/set")[1] == b"1"
    assert [m[0] for m in dash.seen if m[0].startswith("maison/")] == \
        ["maison/salon/valeur", "maison/cuisine/valeur", "maison/cuisine/led/set"], dash.seen
    assert cuisine.until("ctrlled") == [("maison/cuisine/led/set", b"1"), ("ctrlled", b"1")]
    assert salon.until("ctrlled") == [("ctrlled", b"1")]


def test_home_assistant_has_its_own_account_with_only_what_it_needs(broker, clients):
    # Home Assistant reads discovery and readings and switches LEDs; it does not command every
    # node (ctrlled), read $SYS or forge a reading. The dashboard's account sees no discovery.
    salon = login(clients, broker.port, "salon", node_password(broker, "salon"), broker.ca)
    salon.subscribe("ctrlled", "maison/salon/led/set")
    salon.publish("homeassistant/sensor/maison_salon/valeur/config", b"{}", retain=True)
    ha = broker.witness("homeassistant/#", "maison/#", "$SYS/broker/uptime",
                        user=broker.homeassistant["user"], password=broker.homeassistant["password"])
    dash = broker.witness("homeassistant/#", "maison/#")
    assert ha.next("homeassistant/sensor/maison_salon/valeur/config")[1] == b"{}"
    ha.publish("ctrlled", b"1")
    ha.publish("maison/salon/valeur", b"99")
    ha.publish("maison/salon/led/set", b"1")
    assert salon.until("maison/salon/led/set") == [("maison/salon/led/set", b"1")]  # not the ctrlled before it
    ha.next("maison/salon/led/set")
    assert [m[0] for m in ha.seen] == ["homeassistant/sensor/maison_salon/valeur/config", "maison/salon/led/set"], ha.seen
    dash.publish("maison/salon/led/set", b"0")
    dash.next("maison/salon/led/set")
    assert not [m for m in dash.seen if m[0].startswith("homeassistant/")], dash.seen
    assert broker.homeassistant["password"] != broker.dashboard["password"]


def test_an_account_the_acl_does_not_name_gets_nothing(broker, clients):
    salon_pw = node_password(broker, "salon")
    dash = broker.witness("maison/#")
    pw = add_account(broker, "intrus")
    intrus = login(clients, broker.port, "intrus", pw, broker.ca)
    intrus.subscribe("#", "$SYS/#")
    intrus.publish("maison/salon/valeur", b"forged")
    intrus.publish("ctrlled", b"1")
    salon = login(clients, broker.port, "salon", salon_pw, broker.ca)
    salon.publish("maison/salon/valeur", b"21.5")
    assert dash.next("maison/salon/valeur")[1] == b"21.5"
    assert [m[0] for m in dash.seen] == ["maison/salon/valeur"], dash.seen
    dash.publish("maison/salon/led/set", b"1")
    dash.publish("ctrlled", b"1")
    # The one thing everyone may read, asked for last: nothing else came before it.
    intrus.subscribe("$SYS/broker/version")
    got = intrus.until("$SYS/broker/version")
    assert {m[0] for m in got} == {"$SYS/broker/version"}, got


# --- identity: a client id is its account's ---------------------------------------------
def test_no_account_can_take_a_nodes_client_id(broker, start_node, clients):
    # cuisine's account, logging in as salon's id again and again: salon stays connected, keeps its
    # session and its commands. On the nodes' port each id is its account's name.
    pw = node_password(broker, "cuisine")
    node = start_node(broker.node_config("salon", period_s=0.5), "cpython")
    node.wait_log(r"mqtt  connected to localhost:\d+ as salon ")
    for _ in range(5):
        c = clients(broker.port, "cuisine", pw, ca=broker.ca, client_id="salon")
        assert c.outcome() == "accepted"
        c.close()
    assert "as salon (p2, c1, k30, u'cuisine')" not in broker.mosq.log()
    assert "as cuisine (p2, c1, k30, u'cuisine')" in broker.mosq.log()
    assert "Client salon already connected" not in broker.mosq.log()
    w = broker.witness("maison/salon/led")
    w.publish("maison/salon/led/set", b"1")
    assert w.next("maison/salon/led", where=lambda m: m[1] == b"1")
    assert "connection lost" not in node.log() and "another client" not in node.log()
    # Where a client picks its own id (the tools' port, WebSockets), no node account logs in.
    assert clients(broker.settings["tools_port"], "salon", node_password(broker, "salon"),
                   ca=broker.ca).outcome().startswith("refused")
    assert clients(broker.settings["tools_port"], broker.dashboard["user"], broker.dashboard["password"],
                   ca=broker.ca).outcome() == "accepted"


# --- 4. WebSockets ------------------------------------------------------------------------
@pytest.mark.parametrize("ws_tls", [True, False], ids=["wss", "ws"])
def test_websockets_carry_a_nodes_readings(make_broker, start_node, clients, ws_tls):
    b = make_broker(ws_tls=ws_tls)
    ws_port = b.settings["ws_port"]
    dash = b.dashboard
    c = clients(ws_port, dash["user"], dash["password"], ca=b.ca if ws_tls else None, transport="websockets")
    assert c.outcome() == "accepted"
    c.subscribe("maison/salon/valeur")
    start_node(b.node_config(period_s=0.5), "cpython")
    topic, payload = c.next(timeout=30)
    assert topic == "maison/salon/valeur" and 15 < float(payload) < 30
    log = b.mosq.log()
    assert "Unable to create websockets listener" not in log
    if ws_tls:
        # Run as root, Mosquitto reads the root-only key only if the conf keeps it root.
        with open(os.path.join(b.out, "mosquitto.conf")) as f:
            assert "user %s\n" % getpass.getuser() in f.read()
        plain = clients(ws_port, dash["user"], dash["password"], transport="websockets")
        assert plain.outcome(timeout=5) != "accepted"
    assert clients(ws_port, dash["user"], "wrong", ca=b.ca if ws_tls else None,
                   transport="websockets").outcome() == "refused: Not authorized"


# --- 5. the bridge ------------------------------------------------------------------------
def remote_with_bridge_account(make_broker):
    """A second broker with its own kit and CA, and an account that may write maison/#."""
    remote = make_broker()
    pw = add_account(remote, "bridge", acl=["topic write maison/#"])
    return remote, pw


def test_bridge_copies_readings_to_a_remote_broker(make_broker, start_node, clients):
    remote, pw = remote_with_bridge_account(make_broker)
    login(clients, remote.port, "bridge", pw, remote.ca).close()
    far = remote.witness("maison/#")
    local = make_broker(bridge={"name": "cloud", "host": "localhost", "port": remote.port, "cafile": remote.ca,
                                "user": "bridge", "password": pw, "client_id": "maison-bridge"})
    near = local.witness("$SYS/broker/connection/maison-bridge/state")
    assert near.next(where=lambda m: m[1] == b"1", timeout=20)  # the link is up, as the dashboard sees it
    start_node(local.node_config(period_s=0.5), "cpython")
    value = far.next("maison/salon/valeur", timeout=30)[1]
    assert 15 < float(value) < 30
    far.next("maison/salon/status", where=lambda m: m[1] == b"online")
    late = remote.witness("maison/salon/status")  # a retained message reaches a late subscriber
    topic, payload, retained, _ = late.next("maison/salon/status")
    assert payload == b"online" and retained  # kept retained across the bridge
    assert "New bridge connected from 127.0.0.1" in remote.mosq.log()
    # The remote is a kit too: on its nodes' port the bridge's id is its account's name.
    assert "as bridge (p2, c0, k60, u'bridge')" in remote.mosq.log()
    assert pw not in remote.mosq.log() + local.mosq.log()
    # The kit keeps the secret out of kit.json; the remote CA is the kit's own copy.
    with open(os.path.join(local.out, "kit.json")) as f:
        assert pw not in f.read()
    with open(os.path.join(local.out, kit.BRIDGE_CA), "rb") as f, open(remote.ca, "rb") as g:
        assert f.read() == g.read()


@pytest.mark.parametrize("case", ["name absent from the certificate", "another CA", "wrong password"])
def test_bridge_refused_when_the_remote_is_not_the_right_one_or_says_no(make_broker, case, tmp_path):
    remote, pw = remote_with_bridge_account(make_broker)
    bridge = {"host": "localhost", "port": remote.port, "cafile": remote.ca, "user": "bridge", "password": pw}
    if case == "name absent from the certificate":
        remote.name_only("localhost")  # reached as 127.0.0.1
        bridge["host"] = "127.0.0.1"
        expect = "host name verification failed"
    elif case == "another CA":
        certs.write_cert(tmp_path / "other-ca.pem", certs.make_ca("Another CA", certs.new_key()))
        bridge["cafile"] = str(tmp_path / "other-ca.pem")
        expect = "certificate verify failed"
    else:
        bridge["password"] = "not-the-password"
        expect = "Connection Refused: not authorised"
    local = make_broker(bridge=bridge)
    deadline = time.monotonic() + TIMEOUT
    while expect not in local.mosq.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert expect in local.mosq.log(), local.mosq.log()
    assert "New bridge connected" not in remote.mosq.log()


def test_bridge_settings_from_the_command_line(tmp_path):
    out = tmp_path / "kit"
    other = certs.make_ca("Remote CA", certs.new_key())
    certs.write_cert(tmp_path / "remote-ca.der", other, der=True)  # DER in: Mosquitto wants PEM
    secret = "s3cret pass-%d" % time.monotonic_ns()
    (tmp_path / "pw").write_text(secret + "\n")
    base = ["broker", "--out", str(out), "--host", "localhost", "--port", "18883", "--ws-port", "0"]
    r = kit_cli(*base, "--bridge-host", "mqtt.example.org", "--bridge-ca", str(tmp_path / "remote-ca.der"),
                "--bridge-user", "maison", "--bridge-password-file", str(tmp_path / "pw"))
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    assert "bridge 'remote': maison/# copied to mqtt.example.org:8883 as maison" in r.stdout
    conf = (out / "mosquitto.conf").read_text()
    for line in ("connection remote", "address mqtt.example.org:8883", "bridge_cafile %s/bridge-ca.pem" % out,
                 "bridge_insecure false", "remote_clientid remote.localhost", "remote_username maison",
                 "remote_password %s" % secret, "try_private true", "cleansession false", "topic maison/# out 1"):
        assert line + "\n" in conf, line
    assert secret not in (out / "kit.json").read_text()
    assert (out / "bridge.secret").read_text() == secret + "\n"
    assert stat.S_IMODE((out / "bridge.secret").stat().st_mode) == 0o600
    assert x509.load_pem_x509_certificate((out / "bridge-ca.pem").read_bytes()) == other
    # broker-install carries the bridge: its CA is copied, the conf points there with the password.
    s = kit.load_settings(str(out))
    installed = install.kit_conf("/r", s, [])
    assert "bridge_cafile /r/etc/mosquitto/maison/bridge-ca.pem\n" in installed
    assert "remote_password %s\n" % secret in installed
    # A second run keeps the bridge; one flag changes one setting.
    assert kit_cli(*base).returncode == 0
    assert (out / "mosquitto.conf").read_text() == conf
    assert kit_cli(*base, "--bridge-port", "8884", "--bridge-try-private", "0").returncode == 0
    conf2 = (out / "mosquitto.conf").read_text()
    assert "address mqtt.example.org:8884\n" in conf2 and "try_private false\n" in conf2
    assert "remote_password %s\n" % secret in conf2
    # Mistakes are one line naming the setting, and never show the password.
    (tmp_path / "bad").write_text(secret + " \n")
    for args, says in (((*base, "--bridge-password-file", str(tmp_path / "bad")), "make broker: the bridge password: "),
                       ((*base, "--bridge-ca", str(tmp_path / "pw")), "make broker: BRIDGE_CA: "),
                       ((*base, "--bridge-host", "::1"), "make broker: BRIDGE_HOST: ")):
        r = kit_cli(*args)
        assert r.returncode == 1 and r.stderr.startswith(says) and r.stderr.count("\n") == 1, r.stderr
        assert secret not in r.stdout + r.stderr
    r = kit_cli("broker", "--out", str(tmp_path / "k2"), "--bridge-host", "mqtt.example.org")
    assert r.returncode == 1 and r.stderr.startswith("make broker: BRIDGE_CA: "), r.stderr
    # --no-bridge removes it, secret and CA copy included.
    assert kit_cli(*base, "--no-bridge").returncode == 0
    assert "connection " not in (out / "mosquitto.conf").read_text()
    assert not (out / "bridge.secret").exists() and not (out / "bridge-ca.pem").exists()
    assert json.loads((out / "kit.json").read_text())["bridge"] is None


# --- 6. on the wire, as Wireshark shows it --------------------------------------------------
def _readings_and_capture(broker, start_node, tmp_path, port, **changes):
    w = broker.witness("maison/salon/valeur")
    cfg = broker.node_config(period_s=0.5, **changes)
    with open(cfg) as f:
        secret = json.load(f)["mqtt"]["password"]
    pcap = tmp_path / "lo.pcapng"
    with capture(port, pcap):
        node = start_node(cfg, "cpython")
        client_id = node.wait_log(r"connected to localhost:\d+ as (salon)\b").group(1)
        readings = [w.next("maison/salon/valeur")[1] for _ in range(3)]
        time.sleep(0.3)  # the last packets reach the file
    with open(pcap, "rb") as f:
        raw = f.read()
    return pcap, raw, secret, client_id, readings


def test_on_the_tls_port_the_wire_shows_no_mqtt(broker, start_node, tmp_path):
    pcap, raw, secret, client_id, readings = _readings_and_capture(broker, start_node, tmp_path, broker.port)
    decode = "tcp.port==%d,tls" % broker.port
    assert tshark(pcap, decode, "tls.handshake.type == 1", "frame.number")  # a ClientHello: this is TLS
    assert tshark(pcap, decode, "tls.record.content_type == 23", "frame.number")  # and application data
    assert tshark(pcap, decode, "mqtt", "frame.number") == []
    for clear in [secret.encode(), client_id.encode(), b"maison/salon/valeur", b"\x00\x04MQTT", b"online"] + readings:
        assert clear not in raw, clear


def test_on_the_local_plaintext_port_wireshark_reads_the_node(broker, start_node, tmp_path):
    port = broker.local_port
    pcap, raw, secret, client_id, readings = _readings_and_capture(
        broker, start_node, tmp_path, port, mqtt__tls=False, mqtt__port=port)
    decode = "tcp.port==%d,mqtt" % port
    connects = tshark(pcap, decode, "mqtt.msgtype == 1", "mqtt.clientid", "mqtt.conflag.uname",
                      "mqtt.conflag.passwd", "mqtt.conflag.willflag", "mqtt.kalive", "mqtt.willtopic",
                      "mqtt.username", "mqtt.passwd")
    assert len(connects) == 1, connects
    cid, uname, pwflag, will, kalive, willtopic, user, password = [v[0] for v in connects[0]]
    assert cid == client_id and uname in ("1", "True") and pwflag in ("1", "True") and will in ("1", "True")
    assert kalive == "60" and willtopic == "maison/salon/status" and user == "salon"
    assert password == secret  # why the nodes use TLS: anyone on the path reads this
    publishes = tshark(pcap, decode, "mqtt.msgtype == 3", "mqtt.topic")
    topics = [t for row in publishes for t in row[0]]
    assert topics.count("maison/salon/valeur") >= len(readings), topics
    assert "maison/salon/status" in topics
    for clear in [secret.encode(), client_id.encode(), b"maison/salon/valeur"] + readings:
        assert clear in raw, clear  # the same search that finds nothing on the TLS port


# --- make broker, run again -------------------------------------------------------------
def kit_cli(*args):
    return subprocess.run([sys.executable, "-m", "nodekit.broker.kit"] + list(args), cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)


def test_make_broker_twice_keeps_accounts_ca_and_acl(tmp_path):
    out = tmp_path / "kit"
    base = ["broker", "--out", str(out), "--host", "localhost", "--port", "18883", "--ws-port", "19001",
            "--local-port", "11883"]

    def read(*names):
        return {n: (out / n).read_bytes() for n in names}

    def node(room):
        r = kit_cli("node", "--out", str(out), "--room", room)
        assert r.returncode == 0, r.stderr
        return json.loads((out / "nodes" / room / "config.json").read_text())["mqtt"]["password"]

    files = ("ca.pem", "ca.key", "server.pem", "server.key", "passwd", "acl", "dashboard.json", "mosquitto.conf")
    assert kit_cli(*base).returncode == 0
    pw = {room: node(room) for room in ("salon", "cuisine")}
    first = read(*files)
    r = kit_cli(*base)
    assert r.returncode == 0 and pw["salon"] not in r.stdout + r.stderr
    assert node("salon") == pw["salon"] and node("cuisine") == pw["cuisine"]
    assert read(*files) == first  # nothing changed: same CA, same certificate, same passwd lines
    acl = (out / "acl").read_text()
    for room in ("salon", "cuisine", "dashboard"):
        assert acl.count("user %s\n" % room) == 1, acl
    assert sorted(passwd.read(str(out / "passwd"))) == ["cuisine", "dashboard", "homeassistant", "salon"]
    modes = {n: stat.S_IMODE((out / n).stat().st_mode)
             for n in ("ca.key", "server.key", "passwd", "acl", "dashboard.json", "mosquitto.conf",
                       "nodes/salon/config.json")}
    assert modes == dict.fromkeys(modes, 0o600), modes
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    # --renew: a new server certificate from the same CA; nothing else moves.
    assert kit_cli(*base, "--renew").returncode == 0
    renewed = read(*files)
    assert renewed["server.pem"] != first["server.pem"] and renewed["server.key"] != first["server.key"]
    ca = certs.load_cert(str(out / "ca.pem"))
    server = certs.load_cert(str(out / "server.pem"))
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    for n in ("ca.pem", "ca.key", "passwd", "acl", "dashboard.json"):
        assert renewed[n] == first[n], n
    # --new-ca: a new CA and a server certificate from it; the accounts stay.
    assert kit_cli(*base, "--new-ca").returncode == 0
    again = read(*files)
    assert again["ca.pem"] != first["ca.pem"] and again["passwd"] == first["passwd"]
    certs.load_cert(str(out / "server.pem")).verify_directly_issued_by(certs.load_cert(str(out / "ca.pem")))


def test_new_ca_reissues_client_certificates(tmp_path):
    from cryptography.exceptions import InvalidSignature  # noqa: F401
    from nodekit.broker import certs
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost", client_certs=True)
    kit.add_node(out, "salon")
    kit.make_broker(out, new_ca=True)
    kit.add_node(out, "salon")
    ca = certs.load_cert(os.path.join(out, "ca.pem"))
    certs.load_cert(os.path.join(out, "nodes", "salon", "client.der")).verify_directly_issued_by(ca)


# --- what a person types: client lines without the password, the kit tried on this PC ---------
def test_the_printed_client_lines_work_and_keep_the_password_out_of_the_command_line(broker, tmp_path):
    pw = broker.dashboard["password"]
    lines = kit.client_lines(broker.out, "here", "salon")
    assert all(pw not in line for line in lines)
    # As printed, in a shell: the options (host, port, CA, user, password) come from the files.
    sub = subprocess.Popen(["sh", "-c", lines[0] + " -C 1 -W 20"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        pub = subprocess.run(["sh", "-c", lines[3]], capture_output=True, text=True, timeout=20)
        assert pub.returncode == 0, pub.stderr
        out, _ = sub.communicate(timeout=25)
    finally:
        sub.kill()
        sub.wait()
    assert out.strip() == "maison/salon/led/set toggle"
    for where in ("pi", "here"):
        opts = pathlib.Path(broker.out, "clients", where, "mosquitto_sub")
        assert oct(opts.stat().st_mode & 0o777) == "0o600" and "-P %s" % pw in opts.read_text()


def test_the_server_certificate_names_localhost_too(tmp_path):
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="raspberrypi.local", ips=["192.168.1.20"])
    cert = certs.load_cert(os.path.join(out, "server.pem"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"raspberrypi.local", "localhost"}
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"192.168.1.20", "127.0.0.1"}


def test_a_new_broker_host_asks_for_renew_and_then_moves_the_nodes(tmp_path, capsys):
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="raspberrypi.local")
    kit.add_node(out, "salon")
    with pytest.raises(Failure) as e:
        kit.make_broker(out, host="maison-pi.lan")
    assert str(e.value) == (
        "BROKER_HOST=maison-pi.lan, but this kit is for raspberrypi.local: its server certificate would name "
        "maison-pi.lan and no longer raspberrypi.local, and 1 node config(s) name raspberrypi.local (salon). "
        "Run again with RENEW=1 to do it: the node configs are then changed to maison-pi.lan (boards need "
        "make deploy afterwards)")
    assert json.loads(pathlib.Path(out, "kit.json").read_text())["host"] == "raspberrypi.local"  # untouched
    kit.make_broker(out, host="maison-pi.lan", renew=True)
    said = capsys.readouterr().out
    assert "kit: new server certificate for maison-pi.lan, localhost (IPs: 127.0.0.1)" in said
    assert "kit: nodes/salon/config.json now names maison-pi.lan" in said
    cfg = json.loads(pathlib.Path(out, "nodes", "salon", "config.json").read_text())
    assert cfg["mqtt"]["host"] == "maison-pi.lan"


def test_a_port_already_taken_on_this_pc_is_named_with_what_to_do(tmp_path):
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        out = str(tmp_path / "kit")
        r = subprocess.run([sys.executable, "-m", "nodekit.broker.kit", "broker", "--out", out, "--host", "localhost",
                            "--port", str(free_port()), "--ws-port", "0", "--local-port", str(port)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "port %d in use on this machine (LOCAL_PORT)" % port in r.stdout
        assert "make broker LOCAL_PORT=%d" % (port + 1) in r.stdout
        r = subprocess.run([sys.executable, "-m", "nodekit.broker.kit", "try", "--out", out], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stderr.startswith("make broker-try: port %d in use on this machine (LOCAL_PORT), so "
                                                          "Mosquitto could not listen there" % port), r.stderr
    finally:
        held.close()


def test_make_node_passes_the_room_to_no_shell(tmp_path):
    out = tmp_path / "kit"
    kit.make_broker(str(out), host="localhost")
    marker = tmp_path / "ran"
    r = subprocess.run(["make", "-s", "--no-print-directory", "node", "OUT=%s" % out,
                        "ROOM=x'; touch %s; echo '" % marker], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert not marker.exists(), r.stdout + r.stderr
    assert r.returncode != 0 and "make node: ROOM: " in r.stderr, r.stderr
    # Nor to make's own expansion: $SYS stays $SYS (it became YS).
    r = subprocess.run(["make", "-s", "--no-print-directory", "node", "OUT=%s" % out, "ROOM=$SYS"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (out / "nodes" / "$SYS" / "config.json").exists(), r.stdout + r.stderr


def test_what_the_broker_keeps_for_an_absent_node_is_bounded(broker):
    # A node away with its persistent session; 1,500 commands of 3,000 bytes meanwhile (4.5 MB): the
    # broker keeps at most 1 MiB of them for it, not 1,000 of them (3 MB), its default.
    pw = node_password(broker, "salon")

    def node_client():
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="salon-queue", clean_session=False)
        c.username_pw_set("salon", pw)
        c.tls_set(ca_certs=broker.ca)
        return c

    got = queue.Queue()
    c = node_client()
    c.connect("localhost", broker.port)
    c.loop_start()
    c.subscribe("ctrlled", qos=1)
    time.sleep(1)
    c.disconnect()
    c.loop_stop()
    w = broker.witness()
    for i in range(1500):
        w.c.publish("ctrlled", b"%d" % (i % 2) * 3000, qos=1)
    w.c.publish("ctrlled", b"1", qos=1).wait_for_publish(60)
    c = node_client()
    c.on_message = lambda cl, u, m: got.put(m.payload)
    c.connect("localhost", broker.port)
    c.loop_start()
    try:
        n, quiet_since = 0, time.monotonic()
        while time.monotonic() - quiet_since < 3:
            try:
                got.get(timeout=0.5)
                n += 1
                quiet_since = time.monotonic()
            except queue.Empty:
                pass
    finally:
        c.loop_stop()
        c.disconnect()
    assert 100 <= n <= (1 << 20) // 3000 + 1, n  # (the one that crosses the bound is kept)


def test_make_broker_again_without_broker_host_keeps_the_kits(tmp_path):
    out = tmp_path / "kit"
    for args in (["BROKER_HOST=pi.lan"], []):
        r = subprocess.run(["make", "-s", "--no-print-directory", "broker", "OUT=%s" % out] + args, cwd=REPO,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((out / "kit.json").read_text())["host"] == "pi.lan"
