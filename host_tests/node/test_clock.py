"""A node sets its clock from the Pi before TLS, even when it boots before its time server.

The clock: real NTP (chrony on a free loopback port) for the simulated board's ntptime,
a node that boots before its time server and keeps asking until it answers, doctor's NTP
line, and broker-install's chrony drop-in that makes the Pi serve time to the LAN."""
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest

from nodekit import doctor
from nodekit.broker import install, kit
from nodekit.broker.mosquitto import free_port
from nodekit.sim import simnode

CHRONYD = shutil.which("chronyd") or ("/usr/sbin/chronyd" if os.path.exists("/usr/sbin/chronyd") else None)
NTP_1970 = 2208988800  # NTP seconds at 1970-01-01
TO_2000 = 946684800


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ntp_query(port, host="127.0.0.1", timeout=1.0):
    """The server's transmit time (Unix seconds), or None when nothing answers."""
    q = bytearray(48)
    q[0] = 0x1B
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (host, port))
        try:
            m = s.recv(48)
        except OSError:
            return None
    return int.from_bytes(m[40:44], "big") - NTP_1970 if len(m) >= 44 else None


class Chrony:
    """chronyd -d -x (foreground, never touching this PC's clock) serving NTP on 127.0.0.1:port,
    with no upstream server: `local stratum 10` makes it answer from its own clock."""

    def __init__(self, d, port, extra=""):
        self.dir = pathlib.Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.conf = self.dir / "chrony.conf"
        self.conf.write_text("port %d\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 10\n"
                             "cmdport 0\nbindcmdaddress /\npidfile %s/chronyd.pid\n%s"
                             % (port, self.dir, extra))
        self.proc = None

    def start(self):
        self.log = open(self.dir / "chronyd.log", "wb")
        self.proc = subprocess.Popen([CHRONYD, "-d", "-x", "-f", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while ntp_query(self.port, timeout=0.3) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("chronyd did not answer: %s" % (self.dir / "chronyd.log").read_text())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None


@pytest.fixture
def chrony(tmp_path):
    """chrony(start=True, extra=""): an NTP server on a free loopback port; stopped at the end."""
    if CHRONYD is None:
        pytest.skip("chronyd is not installed (apt-get install chrony; make setup does it)")
    if os.geteuid() != 0:
        pytest.skip("chronyd runs as root here")
    made = []

    def make(start=True, extra=""):
        c = Chrony(tmp_path / ("chrony%d" % len(made)), free_udp_port(), extra)
        made.append(c)
        return c.start() if start else c

    yield make
    for c in made:
        c.stop()


# --- the board's ntptime, against a real NTP server --------------------------------------
NTP_SCRIPT = """
import time, machine
print("boot", time.gmtime()[0], time.time())
import ntptime
print("defaults", ntptime.host, ntptime.timeout)
ntptime.host = "localhost"
try:
    print("ntp", ntptime.time())
    ntptime.settime()
    print("set", time.time(), time.gmtime()[:3], machine.RTC().datetime()[:3])
except Exception as e:
    print("error", type(e).__name__, e.args)
"""


def run_board_script(tmp_path, runtime, script, chip="esp32", cause="1", **env):
    """Run `script` as main.py on a simulated board powered on (cause 1) with its clock unset."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "boot.py").write_text("")
    (repo / "main.py").write_text(script)
    board = tmp_path / ("board-%s" % runtime)
    board.mkdir(exist_ok=True)
    (board / "reset_cause").write_text(cause)
    argv, extra = simnode.node_command(runtime)
    extra["NODE_REPO"] = str(repo)
    full = dict(os.environ, SIMBOARD_DIR=str(board), SIMBOARD_PORT=chip, SIMBOARD_RTC="unset", **extra)
    full.update(env)
    p = subprocess.run(argv, cwd=board, env=full, capture_output=True, text=True, timeout=60)
    assert p.returncode == simnode.NO_MAIN_EXIT, p.stdout + p.stderr
    return p.stdout


@pytest.mark.parametrize("chip", ["esp32", "esp8266"])
def test_ntptime_sets_the_board_clock_from_chrony(tmp_path, runtime, chrony, chip):
    server = chrony()
    out = run_board_script(tmp_path, runtime, NTP_SCRIPT, chip, SIMBOARD_NTP_PORT=str(server.port))
    # Powered on after a power cut: 2000-01-01, the ports' epoch, counting from 0.
    boot = re.search(r"^boot (\d+) (\d+)$", out, re.M)
    assert boot and boot.group(1) == "2000" and int(boot.group(2)) < 60, out
    assert "defaults pool.ntp.org 1" in out
    got = re.search(r"^ntp (\d+)$", out, re.M)
    assert got, out
    # Seconds since 2000, as the ports count them: within a minute of this PC's clock.
    assert abs(int(got.group(1)) + TO_2000 - time.time()) < 60, out
    m = re.search(r"^set (\d+) \((\d+), (\d+), (\d+)\) \((\d+), (\d+), (\d+)\)$", out, re.M)
    assert m, out
    assert abs(int(m.group(1)) + TO_2000 - time.time()) < 60
    today = time.gmtime()[:3]
    assert tuple(int(x) for x in m.group(2, 3, 4)) == today == tuple(int(x) for x in m.group(5, 6, 7))


@pytest.mark.parametrize("chip", ["esp32", "esp8266"])
def test_the_clock_after_a_reset_is_each_ports(tmp_path, runtime, chrony, chip):
    server = chrony()
    setter = NTP_SCRIPT + "time.sleep(3)\n"  # this boot's uptime, which an ESP8266 loses at reset
    run_board_script(tmp_path, runtime, setter, chip, SIMBOARD_NTP_PORT=str(server.port))
    out = run_board_script(tmp_path, runtime, 'import time\nprint("after", time.time())\n', chip, cause="5")
    lag = time.time() - TO_2000 - int(re.search(r"^after (\d+)$", out, re.M).group(1))
    if chip == "esp32":
        assert -2 < lag < 2, lag  # the RTC timer ran on through the reset
    else:
        assert 3 <= lag < 30, lag  # the RTC tick counter restarted at 0: behind by the last uptime
    # A power-on loses it on both.
    out = run_board_script(tmp_path, runtime, 'import time\nprint("after", time.gmtime()[0])\n', chip)
    assert "after 2000" in out


def test_ntptime_times_out_when_nothing_answers(tmp_path, runtime):
    # Nothing listens on this UDP port: no reply, a board's lwIP raises ETIMEDOUT after `timeout`.
    t0 = time.monotonic()
    out = run_board_script(tmp_path, runtime, NTP_SCRIPT, SIMBOARD_NTP_PORT=str(free_udp_port()))
    assert "error OSError (110,)" in out, out
    assert re.search(r"^boot 2000 ", out, re.M)  # and the clock stays unset
    assert "set " not in out
    assert time.monotonic() - t0 < 30


def test_ntptime_short_reply_is_valueerror(tmp_path, runtime):
    # A server that answers 40 bytes: ntptime's struct.unpack of msg[40:44] fails on the board.
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(30)
    import threading

    def answer():
        try:
            _, peer = srv.recvfrom(100)
            srv.sendto(b"\x1c" + bytes(39), peer)
        except OSError:
            pass

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    try:
        out = run_board_script(tmp_path, runtime, NTP_SCRIPT, SIMBOARD_NTP_PORT=str(srv.getsockname()[1]))
    finally:
        srv.close()
        th.join(5)
    assert "error ValueError ('buffer too small',)" in out, out


# --- the node: boots before its time server, keeps asking, then connects --------------
@pytest.mark.parametrize("board", ["esp32", "esp8266"])
def test_node_keeps_asking_for_the_time_until_the_server_answers(broker, start_node, runtime, chrony, board):
    server = chrony(start=False)  # the Pi's time server is not up yet
    # An ESP8266 asks only when its config says so (its TLS checks no dates).
    ntp = {"ntp": {"host": "localhost"}} if board == "esp8266" else {}
    cfg = broker.node_config(backoff_max_s=2, **ntp)
    n = start_node(cfg, runtime, board=board, env={"SIMBOARD_RTC": "unset",
                                                   "SIMBOARD_NTP_PORT": str(server.port)})
    # It asks, gets no answer, and asks again (not once per boot).
    n.wait_log(r"cannot set the clock from NTP server localhost \(OSError\(110,?\)\); next try in \d+\.\d s"
               r"(.|\n)*cannot set the clock from NTP server localhost", timeout=40)
    if board == "esp32":
        # mbedTLS would find the broker's certificate not yet valid: it waits, and says so once.
        n.wait_log(r"clock +not set \(it reads 2000\): the broker's certificate cannot be checked")
        n.wait_log(r"(cannot set the clock(.|\n)*){3}")  # still asking
        assert len(re.findall(r"clock +not set", n.log())) == 1, n.log()
        assert not re.search(r"mqtt +connected to", n.log()), n.log()
    server.start()
    n.wait_log(r"clock +set from localhost: %04d-%02d-%02d" % time.gmtime()[:3], timeout=40)
    m = n.wait_log(r"mqtt +connected to localhost", timeout=40)
    if board == "esp32":
        assert n.log().index("set from localhost") < m.start()
    assert n.alive()
    assert len(re.findall(r"clock +not set", n.log())) <= 1


def test_an_esp8266_asks_no_time_server_unless_told(broker, start_node, chrony):
    # axTLS checks no certificate dates, and nothing else on the node uses the date: a time
    # server that answers is not asked (it would say "clock set from ..."), and the node connects.
    server = chrony()
    cfg = broker.node_config()
    n = start_node(cfg, "micropython", board="esp8266", env={"SIMBOARD_RTC": "unset",
                                                              "SIMBOARD_NTP_PORT": str(server.port)})
    n.wait_log(r"mqtt +connected to localhost", timeout=30)
    n.wait_log(r"read .* -> maison/salon/valeur", timeout=30)
    assert "clock" not in n.log(), n.log()


def test_a_node_whose_clock_survived_the_reset_does_not_wait(broker, start_node):
    # The default simulated power-on: the clock reads the PC's time (as if set before).
    cfg = broker.node_config()
    n = start_node(cfg, "cpython", board="esp32", env={"SIMBOARD_NTP_PORT": str(free_udp_port())})
    n.wait_log(r"mqtt +connected to localhost", timeout=30)
    assert "cannot set the clock" not in n.log() and "clock" not in n.log().split("connected to")[0]


# --- make doctor: the node's NTP server answers, or the fix -------------------------------
def test_doctor_ntp_line_for_an_answering_server(chrony, capsys):
    server = chrony()
    r = doctor.Report(__import__("sys").stdout)
    doctor.check_ntp(r, {"ntp": {"host": "localhost"}, "mqtt": {"tls": {"ca": "ca.pem"}, "host": "localhost"}},
                    "esp32", port=server.port)
    out = capsys.readouterr().out
    assert re.fullmatch(r"ok +ntp: localhost answers NTP \(stratum 10\), its clock [+-]\d+\.\d s from this "
                        r"PC's\n", out), out
    assert r.failed == 0


def test_doctor_ntp_line_for_a_silent_server(capsys):
    r = doctor.Report(__import__("sys").stdout)
    doctor.check_ntp(r, {"ntp": {"host": "localhost"}, "mqtt": {"tls": {"ca": "ca.pem"}, "host": "localhost"}},
                    "esp32", port=free_udp_port())
    out = capsys.readouterr().out
    assert re.match(r"FAIL  ntp: no NTP answer from localhost \(UDP \d+\) within 1 s: after a power cut", out), out
    assert "make broker-install" in out and "sudo apt install chrony" in out
    assert r.failed == 1


def test_doctor_ntp_is_a_warning_where_the_board_checks_no_dates(capsys):
    r = doctor.Report(__import__("sys").stdout)
    doctor.check_ntp(r, {"ntp": {"host": "localhost"}, "mqtt": {"tls": {"ca": "ca.pem"}, "host": "localhost"}},
                    "esp8266", port=free_udp_port())
    out = capsys.readouterr().out
    assert out.startswith("warn  ntp: no NTP answer from localhost"), out
    assert r.failed == 0 and r.warned == 1


# --- make broker-install: the Pi serves time to the LAN -----------------------------------
def _kit(tmp_path):
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost", port=free_port(), tools_port=free_port(), ws_port=0, local_port=free_port())
    return out


def test_broker_install_makes_chrony_serve_the_lan(tmp_path, pi_root, chrony, capsys):
    out = _kit(tmp_path)
    conf_dir = os.path.join(pi_root, "etc/chrony")
    os.makedirs(conf_dir)
    with open(os.path.join(conf_dir, "chrony.conf"), "w") as f:
        f.write("pool 2.debian.pool.ntp.org iburst\nconfdir /etc/chrony/conf.d\n")  # Debian's, shortened
    assert install.main(["--out", out, "--root", pi_root, "--no-restart"]) == 0
    dropin = pathlib.Path(pi_root, install.CHRONY_DROPIN)
    text = dropin.read_text()
    assert "local stratum 10" in text and "allow 192.168.0.0/16" in text and "allow 10.0.0.0/8" in text
    err = capsys.readouterr().err
    assert "chrony" not in err, err
    # Idempotent: a second install leaves the same file.
    assert install.main(["--out", out, "--root", pi_root, "--no-restart"]) == 0
    assert dropin.read_text() == text
    # And chronyd takes it: with the drop-in (and a test port) it answers on loopback.
    server = chrony(start=False)
    body = "\n".join(s for s in text.splitlines() if not s.startswith("allow 127."))
    server.conf.write_text(server.conf.read_text() + body + "\n")
    server.start()
    assert abs(ntp_query(server.port) - time.time()) < 60


def test_broker_install_says_how_to_get_chrony_when_it_is_missing(tmp_path, pi_root, capsys):
    out = _kit(tmp_path)
    assert install.main(["--out", out, "--root", pi_root, "--no-restart"]) == 0  # the broker still installs
    err = capsys.readouterr().err
    assert "chrony is not installed" in err and "sudo apt install chrony" in err, err
    assert not os.path.exists(os.path.join(pi_root, install.CHRONY_DROPIN))
