"""tshark as an independent witness of what crosses loopback: a capture around a block, then
its MQTT packets' fields. Used by the tests of the broker kit and of the node's wire format."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest


@contextlib.contextmanager
def capture(port, pcap):
    """tshark capturing TCP port `port` on the loopback interface into pcap, started and stopped."""
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed (apt-get install tshark)")
    err_path = str(pcap) + ".err"
    with open(err_path, "wb") as err:
        p = subprocess.Popen(["tshark", "-i", "lo", "-f", "tcp port %d" % port, "-w", str(pcap)],
                             stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "Capture started" not in _read(err_path):
            if p.poll() is not None or time.monotonic() > deadline:
                said = _read(err_path).strip()
                if "permission" in said.lower() or "not permitted" in said.lower() or os.geteuid() != 0:
                    pytest.skip("tshark cannot capture on lo here (run as root): %s" % said[-300:])
                raise AssertionError("tshark did not start capturing:\n" + said)
            time.sleep(0.05)
        # "Capture started" comes a little before packets are caught: knock until one is written.
        size = os.path.getsize(pcap)
        while os.path.getsize(pcap) == size:
            if time.monotonic() > deadline:
                raise AssertionError("tshark caught nothing on port %d" % port)
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.1)
        yield
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # as Ctrl-C: tshark finishes the file
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _read(path):
    with open(path, errors="replace") as f:
        return f.read()


def tshark(pcap, decode, display, *fields):
    """Rows of fields (each a list: a frame may carry several MQTT packets) from a capture."""
    args = ["tshark", "-r", str(pcap), "-d", decode, "-Y", display, "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=,", "-E", "separator=/t"]  # no topic or id here has a comma or a tab
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [[v.split(",") for v in line.split("\t")] for line in r.stdout.splitlines()]
