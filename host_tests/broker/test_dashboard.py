"""A person at the Pi sees every room and switches its LED from a browser, over HTTPS and wss.

The browser dashboard (make dashboard), in Debian's Chromium driven by Playwright, against
the kit's own Mosquitto serving the page and a simulated node. A person's story: log in,
see the room with the reading mosquitto_sub sees, switch its LED and every LED, see it go
offline; and each thing that can go wrong says so on the page.

The browser trusts the kit's server key for wss (--ignore-certificate-errors-spki-list: that
one key only, as a person's browser does once ca.pem is installed); one test leaves it out."""
import base64
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import ctrl_c
from nodekit.broker import dashboard, install, kit
from nodekit.broker.mosquitto import free_port, wait_port

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements.txt)")
expect = playwright.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Root, a closed network: no sandbox, no GPU, nothing fetched in the background.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (make setup installs it)"),
    pytest.mark.skipif(not dashboard.built(str(dashboard.DIST)), reason="the page is not built: make dashboard"),
]


def spki_hash(cert_path):
    cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextlib.contextmanager
def browser_page(b=None, trust=True):
    """A phone-sized page in a fresh Chromium; with trust, the kit's server key is accepted for wss."""
    args = list(ARGS)
    if b is not None and trust:
        args.append("--ignore-certificate-errors-spki-list=" + spki_hash(os.path.join(b.out, "server.pem")))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 420, "height": 900})
            page.errors = []
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            yield page
        finally:
            browser.close()


def page_url(b, host="localhost"):
    return "%s://%s:%d/" % ("https" if b.settings["ws_tls"] else "http", host, dashboard.page_port(b.settings))


def log_in(page, b, password=None):
    page.get_by_label("User").fill(b.dashboard["user"])
    page.get_by_label("Password").fill(password or b.dashboard["password"])
    page.get_by_role("button", name="Connect").click()


def message(page):
    return page.locator("#message")


def room(page, name):
    return page.get_by_role("region", name=name)


def wait_for(pred, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("never: %s" % what)
        time.sleep(0.05)


def mosquitto_sub(b, topic, count):
    # The dashboard account's options (host, port, CA, user, password) from the kit's option file.
    return subprocess.Popen(["mosquitto_sub", "-t", topic, "-C", str(count), "-W", "30"], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, XDG_CONFIG_HOME=os.path.join(b.out, "clients", "here")))


# Every text the page puts into a card's reading, in order (the records' own text nodes:
# a batch of two updates still gives two values).
SHOWN_READINGS = """() => {
  window.shown = [];
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.classList && r.target.classList.contains('value')) {
        for (const n of r.addedNodes) window.shown.push(n.data);
      }
    }
  }).observe(document.getElementById('rooms'), { subtree: true, childList: true });
}"""


@pytest.fixture
def tls_kit(make_broker):
    """The default kit: MQTT over wss on WS_PORT, the page in clear on its own port."""
    return make_broker(ws_tls=True, http_port=free_port())


def test_a_person_sees_the_room_and_switches_its_led(tls_kit, start_node):
    b = tls_kit
    w = b.witness("maison/salon/led", "maison/salon/led/set")
    cfg = b.node_config(period_s=1)
    sub = mosquitto_sub(b, "maison/salon/valeur", 3)
    try:
        with browser_page(b) as page:
            page.goto(page_url(b))
            log_in(page, b)
            expect(message(page)).to_contain_text("Connected to wss://localhost:%d/ as dashboard"
                                                  % b.settings["ws_port"], timeout=WAIT_MS)
            expect(page.get_by_label("Password")).to_be_hidden()
            page.evaluate(SHOWN_READINGS)
            node = start_node(cfg, "cpython")
            card = room(page, "salon")
            # The page shows the readings mosquitto_sub sees, the same ones in the same order.
            out, _ = sub.communicate(timeout=30)
            seen = out.split()
            assert len(seen) == 3, out
            wait_for(lambda: len(page.evaluate("window.shown")) >= 3, "three readings on the page")
            assert page.evaluate("window.shown")[:3] == seen
            expect(card.locator(".status")).to_have_text("online")
            expect(card.locator(".health")).to_contain_text("health: ok · node ", timeout=WAIT_MS)
            expect(card.locator(".unit")).to_have_text("°C")  # the simulated sensor's, from its stats
            expect(card.locator(".age")).to_contain_text(" s ago")
            # The plot since the page opened: a second reading draws a line.
            expect(card.locator(".plot canvas")).to_have_count(1, timeout=WAIT_MS)

            led = card.get_by_role("switch", name="LED")
            everything = page.get_by_role("switch", name="All LEDs")
            expect(led).not_to_be_checked()
            for want, payload in ((True, b"1"), (False, b"0")):
                led.click()
                w.next("maison/salon/led/set", where=lambda m: m[1] == payload)
                w.next("maison/salon/led", where=lambda m: m[1] == payload)  # the node's echo
                wait_for(lambda: node.led_on() is want, "the LED pin %s" % want)
                expect(led).to_be_checked(checked=want)
                expect(everything).to_be_checked(checked=want)  # the only room: all its LEDs
                if want and os.environ.get("DASHBOARD_SCREENSHOT"):  # the README's picture, LED on
                    time.sleep(10)  # a few readings on the plot
                    page.screenshot(path=os.environ["DASHBOARD_SCREENSHOT"])
            # All LEDs at once, on ctrlled as in the seeds.
            for want, payload in ((True, b"1"), (False, b"0")):
                everything.click()
                w.next("maison/salon/led", where=lambda m: m[1] == payload)
                wait_for(lambda: node.led_on() is want, "the LED pin %s" % want)
                expect(led).to_be_checked(checked=want)
                expect(everything).to_be_checked(checked=want)

            # The node dies (no DISCONNECT): its Last Will turns the card offline.
            os.killpg(node.sim.proc.pid, signal.SIGKILL)
            node.sim.proc.wait()
            expect(card.locator(".status")).to_have_text("offline", timeout=WAIT_MS)
            expect(card).to_have_class("room offline")
            # The switch shows the node's echo, not the click: with no node, the command goes
            # out (the witness sees it) and the switch stays off.
            led.click()
            w.next("maison/salon/led/set", where=lambda m: m[1] == b"1")
            expect(card.locator(".note")).to_contain_text("waiting for the node")
            expect(led).not_to_be_checked()
            assert page.errors == []
    finally:
        sub.kill()
        sub.wait()


def test_wrong_password_unreachable_and_dropped_broker_each_say_so(tls_kit):
    b = tls_kit
    with browser_page(b) as page:
        page.goto(page_url(b))
        log_in(page, b, password="not-the-password")
        expect(message(page)).to_contain_text("Wrong user name or password", timeout=WAIT_MS)
        expect(page.get_by_label("Password")).to_be_visible()
        expect(page.get_by_label("Password")).to_be_focused()
        expect(page.get_by_label("Password")).to_have_value("")
        # The broker goes away before the login: unreachable, retried until it is back.
        b.mosq.stop()
        log_in(page, b)
        expect(message(page)).to_contain_text("Cannot reach the broker at wss://localhost:%d/"
                                              % b.settings["ws_port"], timeout=WAIT_MS)
        b.mosq.start()
        expect(message(page)).to_contain_text("Connected to", timeout=WAIT_MS)
        # A connection that drops: said, and mended by the page itself.
        b.mosq.stop()
        expect(message(page)).to_contain_text("Connection to the broker lost", timeout=WAIT_MS)
        b.mosq.start()
        expect(message(page)).to_contain_text("Connected to", timeout=WAIT_MS)
        # The password was kept for this tab's session: a reload logs in again by itself.
        page.reload()
        expect(message(page)).to_contain_text("Connected to", timeout=WAIT_MS)
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_label("Password")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
        assert page.errors == []


def test_a_browser_that_does_not_trust_the_kit_is_told_why(tls_kit):
    b = tls_kit
    with browser_page(b, trust=False) as page:
        # The page itself comes over HTTPS: a browser without the kit's ca.pem shows its own
        # warning before any of the page (nothing of it could have been altered on the way).
        with pytest.raises(playwright.Error, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(page_url(b))
        # Past the warning, the page loads, but Chromium still refuses the certificate for wss.
        page.click("#details-button")
        page.click("#proceed-link")
        log_in(page, b)
        expect(message(page)).to_contain_text("does not trust the kit's certificate yet", timeout=WAIT_MS)
        # The README's quick way without ca.pem: open https://HOST:WS_PORT/ once and proceed
        # past the warning there too; the page's wss then goes through.
        with pytest.raises(playwright.Error, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto("https://localhost:%d/" % b.settings["ws_port"])
        page.click("#details-button")
        page.click("#proceed-link", no_wait_after=True)
        # Past the warning, Mosquitto's TLS WebSockets listener serves no page: Chromium's error page.
        wait_for(lambda: page.url.startswith("chrome-error://"), "the navigation past the warning")
        page.goto(page_url(b))
        expect(message(page)).to_contain_text("Connected to", timeout=WAIT_MS)
        # Opened by a name the certificate does not carry: the browser warns, and past its
        # warning the page says which name to use.
        with pytest.raises(playwright.Error, match="ERR_CERT_COMMON_NAME_INVALID|ERR_CERT_AUTHORITY_INVALID"):
            page.goto(page_url(b, host="127.0.0.1"))
        page.click("#details-button")
        page.click("#proceed-link")
        log_in(page, b)
        expect(message(page)).to_contain_text("names localhost, not 127.0.0.1", timeout=WAIT_MS)
        expect(message(page)).to_contain_text("Open %s instead" % page_url(b))


def http_get(url, ca=None):
    """(status, body) of a GET; an https URL is checked against the kit's CA."""
    import ssl

    ctx = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def mqtt_login(port, user, password, ca=None):
    """The CONNACK reason of a paho MQTT-over-WebSockets login, as text."""
    got = []
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, transport="websockets", client_id="probe-%d" % time.monotonic_ns())
    c.username_pw_set(user, password)
    if ca:
        c.tls_set(ca_certs=ca)
    c.on_connect = lambda cl, u, f, rc, p: got.append(str(rc))
    c.connect("localhost", port)
    c.loop_start()
    try:
        wait_for(lambda: got, "a CONNACK on port %d" % port)
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0]


def test_the_page_comes_over_https_with_the_kits_certificate_and_nothing_else(tls_kit):
    b = tls_kit
    port = dashboard.page_port(b.settings)
    assert port != b.settings["ws_port"]
    base = "https://localhost:%d/" % port
    status, body = http_get(base, ca=b.ca)
    assert status == 200 and b"<title>Maison</title>" in body
    status, body = http_get(base + "settings.json", ca=b.ca)
    assert json.loads(body) == {"ws_port": b.settings["ws_port"], "ws_tls": True, "names": ["localhost"]}
    for secret in ("passwd", "dashboard.json", "server.key", "ca.key", "kit.json"):
        for path in ("../%s", "%%2e%%2e/%s", "..%%2f%s", "%s"):
            assert http_get(base + path % secret, ca=b.ca)[0] == 404, path % secret
    # A link in www/ to a secret (a careless admin, an attacker with a shell) is not followed.
    www = pathlib.Path(b.out, kit.PAGE_DIR)
    (www / "key.json").symlink_to(pathlib.Path(b.out, "server.key"))
    assert http_get(base + "key.json", ca=b.ca)[0] == 404
    (www / "key.json").unlink()
    # In clear, only a redirect to the https address: no page a LAN attacker could rewrite.
    req = urllib.request.Request("http://localhost:%d/" % port)
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a: None}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(req, timeout=10)
    assert e.value.code == 301 and e.value.headers["Location"] == base
    # Not MQTT: the dashboard's own account, right password, gets nowhere there; wss takes it.
    with pytest.raises(Exception):
        mqtt_login(port, b.dashboard["user"], b.dashboard["password"], ca=b.ca)
    assert mqtt_login(b.settings["ws_port"], b.dashboard["user"], b.dashboard["password"], ca=b.ca) == "Success"
    # Nothing the page server gives holds a password: the whole www/ folder, read back.
    for name in os.listdir(www):
        assert b.dashboard["password"].encode() not in open(os.path.join(www, name), "rb").read(), name
    # Behind a LAN attacker, the page cannot be changed: HTTPS, checked against the kit's CA.
    assert "Strict-Transport-Security" in urllib.request.urlopen(
        base, context=__import__("ssl").create_default_context(cafile=b.ca), timeout=10).headers


def test_with_ws_tls_off_the_page_and_mqtt_share_the_port_in_clear(make_broker, start_node):
    b = make_broker(ws_tls=False)
    assert dashboard.page_port(b.settings) == b.settings["ws_port"]
    start_node(b.node_config(period_s=1), "cpython")
    with browser_page(b) as page:
        page.goto(page_url(b))
        expect(message(page)).to_contain_text("crosses the network in clear", timeout=WAIT_MS)
        log_in(page, b)
        expect(message(page)).to_contain_text("Connected to ws://localhost:%d/" % b.settings["ws_port"],
                                              timeout=WAIT_MS)
        expect(room(page, "salon").locator(".value")).not_to_have_text("—", timeout=WAIT_MS)


def test_installed_on_the_pi_the_page_is_its_own_https_service(tmp_path, pi_root):
    out = str(tmp_path / "kit")
    s = kit.make_broker(out, host="localhost", port=free_port(), tools_port=free_port(), ws_port=free_port(), http_port=free_port(),
                        local_port=free_port())
    root = pathlib.Path(pi_root)
    assert install.main(["--out", out, "--root", str(root), "--no-restart"]) == 0
    www = root / install.PAGE
    assert sorted(os.listdir(www)) == sorted(os.listdir(dashboard.DIST) + ["settings.json"])
    assert "http_dir" not in (root / install.KIT_CONF).read_text()  # Mosquitto serves no page
    unit = (root / install.PAGE_UNIT).read_text()
    assert "User=mosquitto\n" in unit and "NoNewPrivileges=true\n" in unit
    # The unit's own command line, as systemd runs it (python3 of this machine for /usr/bin/python3).
    cmd = [line for line in unit.splitlines() if line.startswith("ExecStart=")][0][len("ExecStart="):].split()
    assert cmd[0] == "/usr/bin/python3"
    proc = subprocess.Popen([sys.executable] + cmd[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_port(s["http_port"], proc=proc), proc.stdout.read()
        status, body = http_get("https://localhost:%d/" % s["http_port"], ca=os.path.join(out, "ca.pem"))
        assert status == 200 and body == (dashboard.DIST / "index.html").read_bytes()
    finally:
        proc.terminate()
        proc.wait(10)
    # The undo takes the service away with the rest.
    install.undo(str(root), restart=False)
    assert not (root / install.PAGE_UNIT).exists() and not (root / install.PAGE_SERVER).exists()


def test_a_dht22_room_shows_its_temperature_and_humidity_with_their_units(tls_kit, start_node):
    b = tls_kit
    node = start_node(b.node_config(period_s=2, sensor={"type": "dht22", "pin": 4}, board="esp32"), "cpython")
    (node.sim.board_dir / "dht4").write_text("20.5 55.5")
    with browser_page(b) as page:
        page.goto(page_url(b))
        log_in(page, b)
        card = room(page, "salon")
        expect(card.locator(".value")).to_have_text("20.50", timeout=WAIT_MS)
        expect(card.locator(".humidity")).to_have_text("· 55.50 %", timeout=WAIT_MS)
        expect(card.locator(".unit")).to_have_text("°C", timeout=WAIT_MS)  # from the node's stats
        assert not page.errors


def test_make_broker_try_serves_the_page_over_https_beside_mosquitto(tmp_path):
    # make broker-try: the kit's Mosquitto and its page server in the foreground; Ctrl-C ends both.
    out = str(tmp_path / "kit")
    s = kit.make_broker(out, host="localhost", port=free_port(), tools_port=free_port(), ws_port=free_port(),
                        http_port=free_port(), local_port=free_port(), bind="127.0.0.1")
    dashboard.write_page(os.path.join(out, kit.PAGE_DIR), s)
    proc = subprocess.Popen([sys.executable, "-m", "nodekit.broker.kit", "try", "--out", out], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_port(s["http_port"], proc=proc) and wait_port(s["port"], proc=proc)
        status, body = http_get("https://localhost:%d/" % s["http_port"], ca=os.path.join(out, "ca.pem"))
        assert status == 200 and b"<title>Maison</title>" in body
    finally:
        ctrl_c(proc)
    for port in (s["http_port"], s["port"]):
        assert not wait_port(port, timeout=1), "port %d still open after Ctrl-C" % port
