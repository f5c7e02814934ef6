"""A node over TLS gets each port's guarantee (ESP8266: encrypted; ESP32: the broker authenticated), and says which.

TLS as each port does it: the ESP8266 profile's axTLS (no verification, RSA key exchange
only) and the ESP32 profile's mbedTLS (verifies), under CPython and the MicroPython VM,
against the kit's real Mosquitto."""
import os
import subprocess

import pytest

from nodekit.broker import certs
from nodekit.sim import simnode

NO_MAIN_EXIT = 3  # nodekit/sim/simboard/start.py: main.py returned


def on_board(tmp_path, runtime, board, code):
    """Run `code` as the boot.py of a simulated board of that port; return what it printed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "boot.py").write_text(code)
    (repo / "main.py").write_text("")
    argv, env = simnode.node_command(runtime)
    env = dict(os.environ, **env)
    env.update(NODE_REPO=str(repo), SIMBOARD_PORT=board, SIMBOARD_DIR=str(tmp_path))
    p = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == NO_MAIN_EXIT, p.stdout + p.stderr
    return p.stdout


ESP8266_SSL = """
import ssl, tls
print(sorted(n for n in dir(ssl) if not n.startswith("_")))
print(sorted(n for n in dir(tls) if not n.startswith("_")))
print(hasattr(ssl, "CERT_REQUIRED"), hasattr(ssl, "CERT_OPTIONAL"))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
try:
    ctx.load_verify_locations(cadata=b"0")
except AttributeError:
    print("load_verify_locations: AttributeError")
try:
    ssl.wrap_socket(None, cadata=b"0")
except AttributeError:
    print("wrap_socket(cadata=): AttributeError")
ctx.verify_mode = 2
print("verify_mode", ctx.verify_mode)
"""


def test_esp8266_ssl_has_the_ports_names_and_nothing_more(tmp_path, runtime):
    out = on_board(tmp_path, runtime, "esp8266", ESP8266_SSL).splitlines()
    # micropython-lib's ssl.py over extmod/modtls_axtls.c's tls module
    assert out == [
        "['CERT_NONE', 'PROTOCOL_TLS_CLIENT', 'PROTOCOL_TLS_SERVER', 'SSLContext', 'tls', 'wrap_socket']",
        "['CERT_NONE', 'PROTOCOL_TLS_CLIENT', 'PROTOCOL_TLS_SERVER', 'SSLContext']",
        "False False",
        "load_verify_locations: AttributeError",
        "wrap_socket(cadata=): AttributeError",
        "verify_mode 0",
    ]


def test_esp8266_connects_to_an_rsa_broker_and_says_it_is_not_authenticated(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(period_s=0.5), runtime, board="esp8266")
    assert w.next("maison/salon/valeur")
    node.wait_log(r"tls   this board cannot verify certificates: encrypted, but the broker is NOT authenticated")
    assert "authenticated: its certificate" not in node.log()


def test_esp8266_with_the_wrong_ca_connects_unauthenticated(broker, start_node, runtime):
    cfg = broker.node_config(period_s=0.5)
    certs.write_cert(cfg.parent / "ca.der", certs.make_ca("Another CA", certs.new_key()), der=True)
    w = broker.witness("maison/salon/valeur")
    node = start_node(cfg, runtime, board="esp8266")
    assert w.next("maison/salon/valeur")  # axTLS never looks at the CA
    node.wait_log(r"the broker is NOT authenticated")
    assert "not trusted" not in node.log()


def test_esp8266_reaching_the_broker_by_another_name_connects_unauthenticated(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(mqtt__host="127.0.0.1", period_s=0.5), runtime, board="esp8266")
    assert w.next("maison/salon/valeur")
    node.wait_log(r"the broker is NOT authenticated")


def test_esp32_says_the_broker_is_authenticated(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(period_s=0.5), runtime, board="esp32")
    assert w.next("maison/salon/valeur")
    node.wait_log(r"tls   the broker is authenticated: its certificate must be signed by the "
                  r"configured CA and name 'localhost'")
    assert "NOT authenticated" not in node.log()


def test_esp8266_cannot_reach_a_broker_with_an_ec_key(make_broker, start_node, runtime):
    b = make_broker(key_type="ec")
    node = start_node(b.node_config(), runtime, board="esp8266")
    # axTLS offers RSA key exchange only: Mosquitto answers with alert 40 (handshake_failure),
    # which axTLS raises as OSError(-40)
    node.wait_log(r"mqtt  localhost:\d+ refused the TLS handshake \(alert 40\): this board's axTLS "
                  r"speaks only RSA key exchange; give the broker an RSA key")
    node.wait_log(r"mqtt  next attempt in")
    assert node.alive() and "Traceback" not in node.log()


def test_esp32_reaches_a_broker_with_an_ec_key(make_broker, start_node, runtime):
    b = make_broker(key_type="ec")
    w = b.witness("maison/salon/valeur")
    start_node(b.node_config(period_s=0.5), runtime, board="esp32")
    assert w.next("maison/salon/valeur")


def test_esp8266_client_certificate_from_the_kit(make_broker, start_node, runtime):
    # The kit writes PKCS#8 keys; axTLS reads PKCS#1 only (ssl/asn1.c): the node unwraps them.
    b = make_broker(client_certs=True)
    w = b.witness("maison/salon/valeur")
    node = start_node(b.node_config(period_s=0.5), runtime, board="esp8266")
    assert w.next("maison/salon/valeur")
    assert "invalid key" not in node.log()


def test_esp8266_refuses_an_ec_client_key(make_broker, start_node, runtime):
    b = make_broker(client_certs=True, key_type="ec")
    node = start_node(b.node_config(), runtime, board="esp8266")
    node.wait_log(r"mqtt  connection to localhost:\d+ failed: invalid key")
    assert node.alive() and "Traceback" not in node.log()
