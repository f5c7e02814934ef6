"""A person whose node does not connect runs make doctor and reads, on one line, what is wrong and how to fix it.

make doctor: a good config passes every check; each fault planted in a real broker
kit and a real Mosquitto is named on its own line, and the checks stop where the
next ones would mean nothing."""
import datetime
import json
import pathlib
import re
import subprocess
import sys
import time

from conftest import DELETE
from nodekit import REPO, doctor
from nodekit.broker import certs
from nodekit.broker.mosquitto import free_port

CHECKS = ["config", "name", "port", "tls", "login", "publish", "subscribe", "keepalive", "broker"]


def run(cfg, capsys):
    """doctor in-process: (exit code, stdout lines)."""
    rc = doctor.main(["--config", str(cfg)])
    out, err = capsys.readouterr()
    assert err == "" and "Traceback" not in out
    return rc, out.splitlines()


def line(lines, check):
    found = [s for s in lines if re.match(r"(ok|warn|FAIL) +%s: " % check, s)]
    assert len(found) == 1, "no single %r line in:\n%s" % (check, "\n".join(lines))
    return found[0]


def checks(lines):
    return [re.match(r"\S+ +(\w+):", s).group(1) for s in lines[:-1]]


def test_a_good_config_passes_and_the_probes_reach_nobody(broker):
    # ntp=False: no NTP server on this PC's port 123 (doctor's ntp line: test_clock.py).
    cfg = broker.node_config(ntp=False)
    w = broker.witness("maison/#", "ctrlled")
    # As the user runs it (make doctor).
    p = subprocess.run([sys.executable, "-m", "nodekit.doctor", "--config", str(cfg)], cwd=str(REPO),
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and p.stderr == "", p.stdout + p.stderr
    assert checks(lines) == CHECKS and all(s.startswith("ok    ") for s in lines[:-1]), p.stdout
    assert lines[-1] == "doctor: all checks passed"
    assert line(lines, "tls").startswith("ok    tls: TLSv1.2, certificate for localhost, 127.0.0.1 signed by the CA in ca.der")
    assert line(lines, "publish").startswith(
        "ok    publish: 'salon' may publish on maison/salon/valeur, maison/salon/status, maison/salon/led")
    assert re.fullmatch(r"ok +broker: mosquitto version 2\.\d+\.\d+", line(lines, "broker"))
    password = json.loads(cfg.read_text())["mqtt"]["password"]
    assert password and password not in p.stdout
    # The QoS 2 probes were never released: a subscriber to everything saw none of
    # them (the marker, sent after doctor ended, is the first message it gets), and
    # nothing was left retained for a later one.
    w.publish("maison/salon/led/set", b"marker")  # no node runs here: nobody's LED
    assert w.next(timeout=10)[:2] == ("maison/salon/led/set", b"marker")
    late = broker.witness("maison/#")
    late.publish("maison/salon/led/set", b"marker2")
    assert late.next(timeout=10)[:2] == ("maison/salon/led/set", b"marker2")


def test_unresolvable_host(broker, capsys):
    rc, lines = run(broker.node_config(mqtt__host="nonexistent.invalid"), capsys)
    assert rc == 1 and checks(lines) == ["config", "name"]
    assert line(lines, "name").startswith("FAIL  name: cannot resolve 'nonexistent.invalid' (mqtt.host): ")


def test_closed_port(broker, capsys):
    port = free_port()
    rc, lines = run(broker.node_config(mqtt__port=port), capsys)
    assert rc == 1 and checks(lines) == ["config", "name", "port"]
    assert line(lines, "port") == (
        "FAIL  port: nothing listens on port %d of localhost (127.0.0.1): is Mosquitto running, is the port "
        "right? (mqtt.port; its listener line in mosquitto.conf)" % port)


def test_plain_mqtt_port_for_tls(broker, capsys):
    rc, lines = run(broker.node_config(mqtt__port=broker.local_port), capsys)
    assert rc == 1 and checks(lines) == ["config", "name", "port", "tls"]
    assert line(lines, "tls").startswith(
        "FAIL  tls: port %d closed the connection during the TLS handshake: is it a TLS listener?" % broker.local_port)


def test_wrong_ca(broker, capsys):
    cfg = broker.node_config()
    certs.write_cert(cfg.parent / "ca.der", certs.make_ca("Another CA", certs.new_key("ec")), der=True)
    rc, lines = run(cfg, capsys)
    assert rc == 1 and checks(lines) == ["config", "name", "port", "tls"]
    assert line(lines, "tls").startswith(
        "FAIL  tls: the broker's certificate is not signed by the CA in ca.der (it was issued by "
        "'Maison MQTT CA (localhost)', the file holds 'Another CA'): ")


def test_host_name_missing_from_the_certificate(broker, capsys):
    # The seeds' "Hostname mismatch": a certificate naming "localhost" only (the kit's names
    # 127.0.0.1 too), reached as 127.0.0.1.
    cfg = broker.node_config(mqtt__host="127.0.0.1")
    broker.name_only("localhost")
    rc, lines = run(cfg, capsys)
    assert rc == 1 and checks(lines) == ["config", "name", "port", "tls"]
    assert line(lines, "tls").startswith(
        "FAIL  tls: host name mismatch: the broker's certificate does not name '127.0.0.1' (mqtt.host); "
        "it names: localhost. ")


def _reissue_server_cert(b, days, now=None):
    out = pathlib.Path(b.out)
    cert = certs.issue(certs.load_key(out / "ca.key"), certs.load_cert(out / "ca.pem"), "localhost",
                       certs.load_key(out / "server.key"), days, dns=["localhost"], now=now)
    certs.write_cert(out / "server.pem", cert)
    b.mosq.stop()
    b.mosq.start()
    return cert


def test_expired_server_certificate(broker, capsys):
    cfg = broker.node_config()
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=40)
    cert = _reissue_server_cert(broker, 10, now=past)
    rc, lines = run(cfg, capsys)
    assert rc == 1 and checks(lines) == ["config", "name", "port", "tls"]
    assert line(lines, "tls").startswith("FAIL  tls: the broker's certificate expired on %s (it is "
                                         % cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"))


def test_server_certificate_expiring_soon_is_a_warning(broker, capsys):
    cfg = broker.node_config(ntp=False)
    _reissue_server_cert(broker, 10)
    rc, lines = run(cfg, capsys)
    assert rc == 0 and lines[-1] == "doctor: all checks passed, 1 warning"
    warn = [s for s in lines if s.startswith("warn")]
    assert len(warn) == 1 and warn[0].startswith("warn  tls: the broker's certificate expires in 9 days (")


def test_wrong_password(broker, capsys):
    rc, lines = run(broker.node_config(mqtt__password="not-the-password"), capsys)
    assert rc == 1 and checks(lines) == ["config", "name", "port", "tls", "login"]
    assert line(lines, "login").startswith(
        "FAIL  login: the broker refused account 'salon': not authorised (CONNACK 5): ")
    assert "not-the-password" not in "\n".join(lines)


def test_acl_denying_the_nodes_topic(broker, capsys):
    cfg = broker.node_config(ntp=False)
    acl = pathlib.Path(broker.out, "acl")
    text = acl.read_text()
    for t in ("valeur", "status", "led"):
        assert "topic write maison/salon/%s\n" % t in text
        text = text.replace("topic write maison/salon/%s\n" % t, "")
    acl.write_text(text)
    broker.mosq.reload()
    deadline = time.monotonic() + 10  # SIGHUP is asynchronous
    while True:
        rc, lines = run(cfg, capsys)
        if line(lines, "publish").startswith("FAIL") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rc == 1 and checks(lines) == CHECKS  # a refused topic does not stop the other checks
    assert line(lines, "publish") == (
        "FAIL  publish: the broker refuses 'salon' publishing on maison/salon/valeur, maison/salon/status, "
        "maison/salon/led (PUBREC 0x87 Not authorized): the node's messages there would vanish without an "
        "error (MQTT 3.1.1 acknowledges them anyway); its acl needs `topic write maison/salon/valeur` and "
        "`topic write maison/salon/status` and `topic write maison/salon/led` under `user salon`, then reload "
        "Mosquitto")
    assert line(lines, "login").startswith("ok") and line(lines, "subscribe").startswith("ok")


def test_keepalive_above_the_brokers_maximum(broker, capsys):
    # The kit sets max_keepalive 600.
    rc, lines = run(broker.node_config(mqtt__keepalive=1000, ntp=False), capsys)
    assert rc == 0 and lines[-1] == "doctor: all checks passed, 1 warning"
    assert line(lines, "keepalive").startswith(
        "warn  keepalive: the broker allows at most 600 s (max_keepalive) and mqtt.keepalive is 1000 s: ")


def test_broker_refusing_tls_1_2(broker, capsys):
    cfg = broker.node_config()
    conf = pathlib.Path(broker.out, "mosquitto.conf")
    conf.write_text(conf.read_text().replace("tls_version tlsv1.2", "tls_version tlsv1.3"))
    broker.mosq.stop()
    broker.mosq.start()
    rc, lines = run(cfg, capsys)
    assert rc == 1 and line(lines, "tls").startswith(
        "FAIL  tls: the broker refuses TLS 1.2, the newest version the boards speak ")


def test_client_certificates(make_broker, capsys):
    b = make_broker(client_certs=True)
    rc, lines = run(b.node_config(ntp=False), capsys)
    assert rc == 0 and checks(lines) == CHECKS, "\n".join(lines)
    assert "client certificate client.der), account 'salon'" in line(lines, "config")
    rc, lines = run(b.node_config(mqtt__tls__cert=DELETE, mqtt__tls__key=DELETE), capsys)
    assert rc == 1 and line(lines, "tls").startswith(
        "FAIL  tls: the broker requires a client certificate (require_certificate true) and mqtt.tls gives none: ")


def test_invalid_config_gets_the_nodes_own_message(broker, capsys):
    rc, lines = run(broker.node_config(mqtt__port="8883"), capsys)
    assert rc == 1 and checks(lines) == ["config"]
    assert lines[0] == ('FAIL  config: mqtt.port: expected an integer 1..65535, got "8883" '
                        "(the node stops at boot with this)")


def test_unreadable_config_is_one_line(tmp_path, capsys):
    assert doctor.main(["--config", str(tmp_path / "missing.json")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "make doctor: cannot read %s: No such file or directory\n" % (tmp_path / "missing.json")


def test_the_doctor_keeps_what_is_queued_for_the_node(broker, start_node, capsys):
    # The doctor logs in with the node's account; on the kit's nodes' port that is the node's own
    # session. A command queued for a node that is away still reaches it after a doctor run.
    cfg = broker.node_config(ntp=False, period_s=60)
    node = start_node(cfg, "cpython")
    node.wait_log(r"mqtt  connected to \S+ as salon ")
    node.stop()
    w = broker.witness("maison/salon/led")
    w.publish("maison/salon/led/set", b"1")  # queued for the absent node (QoS 1, its session)
    rc, lines = run(cfg, capsys)
    assert rc == 0, lines
    node = start_node(cfg, "cpython", name="again")
    assert w.next("maison/salon/led", where=lambda m: m[1] == b"1", timeout=30)
    node.wait_log(r"mqtt  connected to \S+ as salon \(resumed session\)")
