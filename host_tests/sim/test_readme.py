"""A first make sim prints what the README shows, and Ctrl-C stops it cleanly.

The README's sample of `make sim` is what a first run prints: the same lines in the same
order, up to the numbers that change from run to run (times, ports, ids, readings)."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

from nodekit import REPO

_NUMBER = re.compile(r"\b\d+(\.\d+)?\b|\bsalon-[0-9a-f]+\b")


def _shape(line, sim_dir):
    line = line.replace(os.path.relpath(str(sim_dir), str(REPO)), ".sim").replace(str(sim_dir), ".sim")
    return _NUMBER.sub("N", line.rstrip())


def _readme_sample():
    text = (REPO / "README.md").read_text()
    start = text.index("<!-- make sim: a first run -->\n```\n") + len("<!-- make sim: a first run -->\n```\n")
    return text[start:text.index("```", start)].splitlines()


def _sim(sim_dir, *args):
    # Its own process group, as a terminal's foreground job: Ctrl-C is os.killpg(SIGINT).
    return subprocess.Popen([sys.executable, "-u", "-m", "nodekit.sim.simnode"] + list(args), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, SIM_DIR=str(sim_dir)))


def test_the_readme_shows_what_a_first_make_sim_prints(tmp_path):
    sim_dir = tmp_path / "sim"
    p = _sim(sim_dir)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(l.rstrip("\n") for l in p.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum("-> maison/salon/valeur" in l for l in lines) < 2:
            time.sleep(0.2)
        # The README's own line, as printed, switches the LED.
        cmd = next(l.strip() for l in lines if "mosquitto_pub -t ctrlled -m 1" in l)
        assert subprocess.run(["sh", "-c", cmd], timeout=20).returncode == 0
        while time.monotonic() < deadline and not any("led   on (ctrlled)" in l for l in lines):
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C
        p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(timeout=5)
    got = [_shape(l, sim_dir) for l in lines]
    want = [_shape(l, sim_dir) for l in _readme_sample()]
    # In order; the simulator's "board pin" lines and the node's lines come from two processes.
    it = iter(got)
    missing = [w for w in want if w and not (w.startswith("         board") and w in got) and w not in it]
    assert not missing, "README lines not printed by make sim:\n%s\n--- printed:\n%s" % (
        "\n".join(missing), "\n".join(lines))
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1] == "sim: stopping" or "sim: stopping" in lines[-3:], lines[-5:]


def test_ctrl_c_on_make_sim_with_the_vm_stops_cleanly(tmp_path, runtime):
    p = _sim(tmp_path / "sim", "--runtime", runtime)
    try:
        out = []
        reader = threading.Thread(target=lambda: out.extend(l.rstrip("\n") for l in p.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("-> maison/salon/valeur" in l for l in out):
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(timeout=20) == 0
        reader.join(timeout=5)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert any("-> maison/salon/valeur" in l for l in out), out
    assert "Traceback" not in "\n".join(out) and out[-1] == "sim: stopping", out[-6:]
