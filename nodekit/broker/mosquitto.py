"""Start and stop a real Mosquitto on a kit's mosquitto.conf (tests, make sim)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from nodekit.broker import dbguard


_GIVEN = set()  # ports already handed out by this process


def free_port():
    """A free loopback port, never one this process handed out before: the kernel may give
    a just-closed port again, and a kit asks for several before Mosquitto binds any (seen:
    its plain and WebSockets listeners on the same port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def answers_mqtt(port, host="127.0.0.1", timeout=2.0):
    """True once a broker's main loop answers a CONNECT on a plaintext port (even with a refusal)."""
    connect = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02hi"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(connect)
            return s.recv(4)[:1] == b"\x20"
    except OSError:
        return False


def stop_process(proc, timeout=5):
    """SIGTERM, then SIGKILL if it is still there after `timeout` s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Mosquitto:
    def __init__(self, conf, port, log_path, plain_port=None, reserve=dbguard.RESERVE):
        self.conf = conf
        self.reserve = reserve  # bytes the database guard sets aside for the save at a stop
        self.port = port
        self.plain_port = plain_port  # if given, readiness is proved by an MQTT answer there
        self.log_path = log_path
        self.proc = None

    def persistence_file(self):
        with open(self.conf) as f:
            for line in f:
                if line.startswith("persistence_location "):
                    return os.path.join(line.split(None, 1)[1].strip(), "mosquitto.db")
        return None

    def start(self, timeout=10.0):
        # As the installed service does (ExecStartPre): a corrupt database must not stop the broker.
        db = self.persistence_file()
        if db:
            dbguard.prepare(db, self.reserve)
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([exe, "-c", self.conf], stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        ok = wait_port(self.port, timeout=timeout, proc=self.proc)
        # Mosquitto opens its sockets before it installs its signal handlers: a SIGHUP
        # in between kills it. Its first MQTT answer says the main loop is running.
        deadline = time.monotonic() + timeout
        while ok and self.plain_port and not answers_mqtt(self.plain_port):
            ok = time.monotonic() < deadline and self.proc.poll() is None
            time.sleep(0.05)
        if not ok:
            self.stop()
            raise RuntimeError("mosquitto did not start; its log:\n" + self.log())
        return self

    def reload(self):
        """Make Mosquitto re-read its password and ACL files (as `systemctl reload` does)."""
        self.proc.send_signal(signal.SIGHUP)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            db = self.persistence_file()
            if db:
                dbguard.release(db)  # as the installed service does (ExecStop): room for the last save
            stop_process(self.proc)
        if self.proc:
            self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class PageServer:
    """The dashboard page over HTTPS (nodekit/broker/pageserver.py) from a kit's folder, as the Pi's
    maison-dashboard service runs it: www/ with the kit's server certificate, on `port`.
    log_path None: its lines go to this terminal (make broker-try)."""

    def __init__(self, out, port, bind, host, log_path=None, www="www"):
        self.port, self.bind = port, bind
        self.cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "pageserver.py"),
                    "--www", os.path.join(out, www), "--cert", os.path.join(out, "server.pem"),
                    "--key", os.path.join(out, "server.key"), "--port", str(port),
                    "--bind", bind or "", "--host", host]
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=10.0):
        self._log = open(self.log_path, "ab") if self.log_path else None
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT if self._log else None)
        if not wait_port(self.port, host=self.bind or "127.0.0.1", timeout=timeout, proc=self.proc):
            self.stop()
            raise RuntimeError("the page server did not start%s" % (": " + open(self.log_path).read()
                                                                     if self.log_path else ""))
        return self

    def stop(self):
        if self.proc:
            stop_process(self.proc)
            if self._log:
                self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def mosquitto_path():
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
