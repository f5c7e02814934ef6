"""Put MicroPython on a board, then the node: make firmware / make flash.

    make firmware BOARD=esp32                     download the image, check it, pin its sha256
    make flash BOARD=huzzah PORT=/dev/ttyUSB0     the same if needed, erase, write, make deploy
    make flash ... IMAGE=file.bin                 an image downloaded elsewhere (offline PCs)
    make flash ... DRY_RUN=1                      every check that leaves the board alone, the commands

The images and board profiles are in firmware/boards.json. Nothing is written to a
board before everything that can be checked on the PC has been checked: the board
name against the config's, the config, the port, the image (esptool image-info: its
chip, checksum and digest; its sha256 against boards.json, SHA256= or the pin of its
first download, firmware/images/pins.json), and the chip esptool finds.
"""
import argparse
import hashlib
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request

from nodekit import REPO
from nodekit.errors import Failure, report

MANIFEST = pathlib.Path(os.getenv("FIRMWARE_MANIFEST") or REPO / "firmware" / "boards.json")
IMAGES = REPO / "firmware" / "images"   # downloads, git-ignored
PINS = "pins.json"                      # each image's sha256 at its first download (or SHA256=), next to it
BOOT_WAIT_S = 4                         # a fresh MicroPython makes its filesystem at first boot


def manifest():
    with open(MANIFEST) as f:
        return json.load(f)


def board_profile(name):
    """(board profile, image entry) for BOARD=name, or a Failure naming the known boards."""
    m = manifest()
    if not name:
        raise Failure("BOARD", "give the board, e.g. BOARD=huzzah (known: %s)" % ", ".join(m["boards"]))
    if name not in m["boards"]:
        raise Failure("BOARD=%s" % name, "unknown board (known: %s)" % ", ".join(m["boards"]))
    b = m["boards"][name]
    return b, m["images"][b["image"]]


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _pins(images):
    try:
        with open(pathlib.Path(images) / PINS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _pin(images, file, digest):
    pins = _pins(images)
    pins[file] = digest
    path = pathlib.Path(images) / PINS
    path.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")


def expected_sha256(image, images, given=None):
    """(hash, where it comes from) an image must match, or (None, None): boards.json's wins over
    everything, then SHA256=, then the pin made at the first download (firmware/images/pins.json)."""
    for want, source in ((image.get("sha256"), "firmware/boards.json"), (given, "SHA256="),
                         (_pins(images).get(image["file"]), "the pin in %s" % (pathlib.Path(images) / PINS))):
        if want:
            return want.lower(), source
    return None, None


def check_image(path, chip):
    """What esptool says of an image file (`esptool image-info`): a valid image for `chip`, its
    checksum and, where the format has one (ESP32s), its SHA-256 digest. Returns esptool's name
    for the image's chip; a Failure names what is wrong."""
    r = subprocess.run(_esptool() + ["image-info", str(path)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    fatal = re.search(r"A fatal error occurred: (.+)", out)
    found = re.search(r"Detected image type: (\S+)", out)
    if fatal or r.returncode or not found:
        why = fatal.group(1).strip() if fatal else (out.strip().splitlines() or ["no output"])[-1]
        raise Failure("%s is not a usable MicroPython image (esptool image-info: %s)" % (path, why))
    if not chip_matches(chip, found.group(1)):
        raise Failure("%s is an image for %s, not for this board's %s" % (path, found.group(1), chip))
    bad = re.findall(r"^(Checksum|Validation hash): .*\((invalid[^)]*)\)", out, re.M)
    if bad:
        raise Failure("%s is damaged: esptool image-info finds its %s" % (
            path, " and ".join("%s %s" % (what.lower(), why) for what, why in bad)))
    return found.group(1)


def _fetch(url, dest):
    """Download url (HTTPS, the certificate verified) into dest."""
    if not url.startswith("https://"):
        raise Failure("refusing %s: images come over HTTPS only (a certificate-checked download)" % url)
    print("firmware: downloading %s" % url, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            while True:
                block = r.read(1 << 16)
                if not block:
                    break
                f.write(block)
    except OSError as e:
        dest.unlink(missing_ok=True)
        why = "HTTP %d %s" % (e.code, e.reason) if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        raise Failure("cannot download %s (%s). Fetch it by hand from that address and give it to "
                         "make flash with IMAGE=path/to/file.bin, or try make firmware again" % (url, why))


def _refusal(path, got, want, source, board):
    """Why a file whose sha256 is `got` is refused, and the one next step."""
    if source == "SHA256=":
        return ("sha256 of %s is %s, not the SHA256= given (%s): the file was not kept. Check the hash "
                "you copied; if the file's is the one micropython.org lists, run again with SHA256=%s"
                % (path.name, got, want, got))
    if source.startswith("the pin"):
        return ("sha256 of %s is %s, but %s says %s (its first download): the file changed upstream or "
                "arrived damaged, and was not kept. If you trust the new file: make firmware BOARD=%s "
                "SHA256=%s" % (path.name, got, source, want, board, got))
    return ("sha256 of %s is %s, but %s says %s: a damaged or changed file, not kept. Run make firmware "
            "again; if it says the same, the file changed on micropython.org" % (path.name, got, source, want))


def download(board, images=IMAGES, given=None):
    """make firmware: the board's image over HTTPS, checked by esptool, its sha256 matched against
    boards.json, SHA256= or the pin of the first download, and pinned when nothing pinned it.
    Returns its path."""
    _, image = board_profile(board)
    images = pathlib.Path(images)
    images.mkdir(parents=True, exist_ok=True)
    dest = images / image["file"]
    want, source = expected_sha256(image, images, given)
    if dest.exists() and want and _sha256(dest) == want:
        got = want  # downloaded before, and still the same file
    else:
        part = dest.with_name(dest.name + ".part")
        _fetch(image["url"], part)
        try:
            check_image(part, image["chip"])
            got = _sha256(part)
            if want and got != want:
                raise Failure(_refusal(dest, got, want, source, board))
        except Failure:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
    if not image.get("sha256") and _pins(images).get(image["file"]) != got:
        _pin(images, image["file"], got)
        print("firmware: pinned sha256 %s for %s in %s" % (got, image["file"], images / PINS))
    print("firmware: %s OK (MicroPython %s for %s, sha256 %s)" % (dest, image["version"], image["chip"], got))
    return dest


# --- flashing ------------------------------------------------------------------
def _esptool():
    return [sys.executable, "-m", "esptool"]


def chip_matches(image_chip, detected):
    """esptool names chips 'ESP32', 'ESP32-S3', 'ESP8266'...; the manifest says esp32s3."""
    return detected.replace("-", "").lower() == image_chip


def plan(board, port, config, image_path=None, images=IMAGES, baud=None):
    """The exact commands make flash runs, in order (the chip check first)."""
    prof, image = board_profile(board)
    path = pathlib.Path(image_path) if image_path else pathlib.Path(images) / image["file"]
    baud = str(baud or image["baud"])
    write = ["write-flash", "--flash-size", image["flash_size"]]
    if prof.get("flash_mode"):
        write += ["--flash-mode", prof["flash_mode"]]
    write += [image["offset"], str(path)]
    return {
        "image": path,
        "detect": _esptool() + ["--port", port, "chip-id"],
        "erase": _esptool() + ["--chip", image["chip"], "--port", port, "--baud", baud, "erase-flash"],
        "write": _esptool() + ["--chip", image["chip"], "--port", port, "--baud", baud] + write,
        "deploy": [sys.executable, "-m", "nodekit.board.deploy", "--port", port, "--config", str(config)],
    }


def check_config(path):
    """The config the node will get, checked by the node's own validation before anything is erased."""
    from nodekit.rules import check_file
    try:
        check_file(path)
    except ValueError as e:
        raise Failure(str(e))


def board_of(board, config):
    """BOARD=, or the config's "board" when BOARD= is not given: the two must agree, since the
    config's LED and sensor pins were written for its board (make node BOARD=)."""
    try:
        with open(config) as f:
            named = json.load(f).get("board")
    except (OSError, ValueError, AttributeError):
        named = None  # check_config says what is wrong with the file
    if board and named and board != named:
        raise Failure('BOARD=%s, but %s was made for "board": "%s": give BOARD=%s (or leave it out), '
                         'or make a config for %s with make node BOARD=%s' % (board, config, named, named, board, board))
    if not board and not named:
        raise Failure("BOARD", "give the board, e.g. BOARD=huzzah (%s names none; known: %s)"
                      % (config, ", ".join(manifest()["boards"])))
    return board or named


def check_local_image(path, image, images, given=None):
    """IMAGE=file, a download made elsewhere: esptool's checks, and its sha256 against SHA256=, or
    against boards.json / the pin when it is the profile's own file. Returns its sha256."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise Failure("IMAGE=%s" % path, "no such file")
    check_image(path, image["chip"])
    got = _sha256(path)
    want, source = (given.lower(), "SHA256=") if given else (
        expected_sha256(image, images) if path.name == image["file"] else (None, None))
    if want and got != want:
        raise Failure("sha256 of %s is %s, but %s says %s: nothing was written" % (path, got, source, want))
    if not want:
        print("flash: %s: sha256 %s, not pinned: compare it with the one micropython.org lists" % (path, got))
    return got


def detect_chip(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # esptool 5 prints "Connected to ESP32 on /dev/ttyUSB0:" (older: "Detecting chip type... ESP32").
    m = re.search(r"Connected to (\S+) on|Detecting chip type\.\.\. (\S+)", r.stdout)
    if r.returncode == 0 and m:
        return m.group(1) or m.group(2)
    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no answer"]
    raise Failure("esptool found no chip on %s: %s (hold BOOT/FLASH while it connects, or try another "
                     "cable: some are charge-only)" % (cmd[cmd.index("--port") + 1], tail[0]))


def _detect(steps, image, port, board):
    print("flash: $ %s" % shlex.join(steps["detect"]), flush=True)
    chip = detect_chip(steps["detect"])
    if not chip_matches(image["chip"], chip):
        raise Failure("the board on %s is an %s, but BOARD=%s is for %s: nothing was written" % (
            port, chip, board, image["chip"]))


def dry_run(board, port, config, steps, image, images, image_path=None, given=None):
    """Every check make flash can make without touching the board, each on a line, then the commands
    it would run. Exit status 1 when a check fails."""
    failed = 0

    def line(status, what):
        nonlocal failed
        failed += status == "FAIL"
        print("  %-9s %s" % (status, what))

    print("flash: dry run: nothing is written, the board is not touched")
    line("ok", "config %s, board %s (%s)" % (config, board, manifest()["boards"][board]["name"]))
    if os.path.exists(port):
        line("ok", "serial port %s exists" % port)
    else:
        line("FAIL", "PORT=%s: no such serial port (is the board plugged in? ls /dev/ttyUSB* /dev/ttyACM*)" % port)
    path = steps["image"]
    if image_path or path.exists():
        try:
            if image_path:
                got = check_local_image(path, image, images, given)
                line("ok", "image %s: a valid %s image (esptool image-info), sha256 %s" % (path, image["chip"], got))
            else:
                check_image(path, image["chip"])
                got = _sha256(path)
                want, source = expected_sha256(image, images, given)
                if want and got != want:
                    line("FAIL", _refusal(path, got, want, source, board))
                else:
                    line("ok", "image %s: a valid %s image (esptool image-info), sha256 %s, %s"
                         % (path, image["chip"], got, "matches " + source if want else "not pinned yet"))
        except Failure as e:
            line("FAIL", str(e))
    else:
        line("to do", "image %s not downloaded yet: make flash fetches it from %s, checks it with esptool "
             "and pins its sha256 (offline: IMAGE=path/to/file.bin)" % (path, image["url"]))
    line("not made", "the chip on %s: esptool chip-id resets the board; make flash asks it first and "
         "writes nothing unless it is an %s" % (port, image["chip"]))
    print("flash: the commands, in order:")
    for name in ("detect", "erase", "write", "deploy"):
        print(shlex.join(steps[name]))
    return 1 if failed else 0


def _run(cmd):
    print("flash: $ %s" % shlex.join(cmd), flush=True)
    if subprocess.run(cmd).returncode:
        raise Failure("%s failed (see its output above)" % " ".join(cmd[2:4]))


def flash(board, port, config, dry_run_only=False, image_path=None, images=IMAGES, given=None, baud=None):
    board = board_of(board, config)
    _, image = board_profile(board)
    check_config(config)
    if not port:
        raise Failure("PORT", "give the board's serial port, e.g. PORT=/dev/ttyUSB0 (ls /dev/ttyUSB* /dev/ttyACM*)")
    steps = plan(board, port, config, image_path, images, baud)
    if dry_run_only:
        return dry_run(board, port, config, steps, image, images, image_path, given)
    if not os.path.exists(port):
        raise Failure("PORT=%s" % port, "no such serial port (is the board plugged in? ls /dev/ttyUSB* /dev/ttyACM*)")
    if image_path:
        check_local_image(steps["image"], image, images, given)
    else:
        download(board, images, given)  # fetched if missing; checked and pinned either way
    _detect(steps, image, port, board)
    _run(steps["erase"])
    _run(steps["write"])
    print("flash: MicroPython written; waiting %d s for its first boot" % BOOT_WAIT_S, flush=True)
    time.sleep(BOOT_WAIT_S)
    _run(steps["deploy"])
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="flash", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    fw = sub.add_parser("firmware", help="download and check a board's MicroPython image")
    fl = sub.add_parser("flash", help="erase, write MicroPython, deploy the node")
    for p in (fw, fl):
        p.add_argument("--board")
        p.add_argument("--images", default=str(IMAGES))
        p.add_argument("--sha256", help="the image's expected sha256 (checked; then pinned)")
    fl.add_argument("--port")
    fl.add_argument("--config", default="config.json")
    fl.add_argument("--image", help="a local image file instead of the downloaded one")
    fl.add_argument("--baud", type=int)
    fl.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "firmware":
            download(a.board, a.images, a.sha256)
            return 0
        return flash(a.board, a.port, a.config, a.dry_run, a.image, a.images, a.sha256, a.baud)
    except Failure as e:
        return report("make " + a.cmd, e)


if __name__ == "__main__":
    sys.exit(main())
