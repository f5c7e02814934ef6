"""Put MicroPython on a board, then the node: make firmware / make flash.

    make firmware BOARD=esp32                     download the image, check its sha256
    make flash BOARD=huzzah PORT=/dev/ttyUSB0     erase, write, then make deploy
    make flash ... DRY_RUN=1                      print every command, touch nothing

The images and board profiles are in firmware/boards.json. Nothing is written to a
board before everything that can be checked on the PC has been checked: the board
name, the port, the config, the image's sha256, and the chip esptool finds.
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
import urllib.request

from nodekit import REPO

MANIFEST = pathlib.Path(os.getenv("FIRMWARE_MANIFEST") or REPO / "firmware" / "boards.json")
IMAGES = REPO / "firmware" / "images"   # downloads, git-ignored
PINS = "pins.json"                      # sha256 a user pinned (TRUST=1 / SHA256=), next to the images
BOOT_WAIT_S = 4                         # a fresh MicroPython makes its filesystem at first boot


class FlashError(Exception):
    pass


def manifest():
    with open(MANIFEST) as f:
        return json.load(f)


def board_profile(name):
    """(board profile, image entry) for BOARD=name, or a FlashError naming the known boards."""
    m = manifest()
    if not name:
        raise FlashError("give the board, e.g. BOARD=huzzah (known: %s)" % ", ".join(m["boards"]))
    if name not in m["boards"]:
        raise FlashError("unknown BOARD=%s (known: %s)" % (name, ", ".join(m["boards"])))
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
    """The hash an image must have: SHA256= if given, else the manifest's, else a local pin."""
    return (given or image.get("sha256") or _pins(images).get(image["file"]) or "").lower() or None


def verify(path, image, images, given=None):
    want = expected_sha256(image, images, given)
    if not want:
        raise FlashError("%s has no sha256 to check it against: pin it with make firmware BOARD=... "
                         "SHA256=<hash> (or TRUST=1 to trust this download), see the README" % image["file"])
    got = _sha256(path)
    if got != want:
        raise FlashError("%s: sha256 is %s, expected %s: a corrupt or wrong image; nothing was written "
                         "(delete it and run make firmware again)" % (path, got, want))
    return got


def download(board, images=IMAGES, given=None, trust=False):
    """make firmware: fetch the board's image over HTTPS and check it; returns its path."""
    _, image = board_profile(board)
    images = pathlib.Path(images)
    images.mkdir(parents=True, exist_ok=True)
    dest = images / image["file"]
    if not dest.exists():
        part = dest.with_suffix(".part")
        print("firmware: downloading %s" % image["url"])
        try:
            with urllib.request.urlopen(image["url"], timeout=60) as r, open(part, "wb") as f:
                while True:
                    block = r.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
        except OSError as e:
            part.unlink(missing_ok=True)
            raise FlashError("cannot download %s: %s" % (image["url"], getattr(e, "reason", e)))
        os.replace(part, dest)
    if trust and not expected_sha256(image, images, given):
        digest = _sha256(dest)
        _pin(images, image["file"], digest)
        print("firmware: trusted this download and pinned its sha256 %s in %s" % (digest, images / PINS))
    try:
        digest = verify(dest, image, images, given)
    except FlashError:
        if expected_sha256(image, images, given):
            dest.unlink()  # a wrong file must not wait there to be flashed later
        raise
    if given and not image.get("sha256"):
        _pin(images, image["file"], digest)
    print("firmware: %s OK (MicroPython %s for %s, sha256 %s)" % (dest, image["version"], image["chip"], digest))
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
        "deploy": [sys.executable, "-m", "nodekit.deploy", "--port", port, "--config", str(config)],
    }


def check_config(path):
    """The config the node will get, checked by the node's own validation before anything is erased."""
    from nodekit.nodeconfig import check_file
    try:
        check_file(path)
    except ValueError as e:
        raise FlashError(str(e))


def detect_chip(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    # esptool 5 prints "Connected to ESP32 on /dev/ttyUSB0:" (older: "Detecting chip type... ESP32").
    m = re.search(r"Connected to (\S+) on|Detecting chip type\.\.\. (\S+)", r.stdout)
    if r.returncode == 0 and m:
        return m.group(1) or m.group(2)
    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no answer"]
    raise FlashError("esptool found no chip on %s: %s (hold BOOT/FLASH while it connects, or try another "
                     "cable: some are charge-only)" % (cmd[cmd.index("--port") + 1], tail[0]))


def _run(cmd):
    print("flash: $ %s" % shlex.join(cmd), flush=True)
    if subprocess.run(cmd).returncode:
        raise FlashError("%s failed (see its output above)" % " ".join(cmd[2:4]))


def flash(board, port, config, dry_run=False, image_path=None, images=IMAGES, given=None, baud=None):
    if not port:
        raise FlashError("give the board's serial port, e.g. PORT=/dev/ttyUSB0 (ls /dev/ttyUSB* /dev/ttyACM*)")
    steps = plan(board, port, config, image_path, images, baud)
    _, image = board_profile(board)
    check_config(config)
    if dry_run:
        have = steps["image"].exists()
        print("flash: dry run, nothing is touched. Image: %s (%s)" % (
            steps["image"], "present" if have else "not downloaded yet: make firmware BOARD=%s" % board))
        print("flash: the chip must be %s" % image["chip"])
        for name in ("detect", "erase", "write", "deploy"):
            print(shlex.join(steps[name]))
        return 0
    if not os.path.exists(port):
        raise FlashError("no serial port %s (is the board plugged in? ls /dev/ttyUSB* /dev/ttyACM*)" % port)
    if not steps["image"].exists():
        raise FlashError("no image %s: run make firmware BOARD=%s first" % (steps["image"], board))
    verify(steps["image"], image, images, given)
    print("flash: $ %s" % shlex.join(steps["detect"]), flush=True)
    chip = detect_chip(steps["detect"])
    if not chip_matches(image["chip"], chip):
        raise FlashError("the board on %s is an %s, but BOARD=%s is for %s: nothing was written" % (
            port, chip, board, image["chip"]))
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
        p.add_argument("--sha256", help="the image's expected sha256 (when the manifest has none)")
    fw.add_argument("--trust", action="store_true", help="pin the sha256 of this HTTPS download")
    fl.add_argument("--port")
    fl.add_argument("--config", default="config.json")
    fl.add_argument("--image", help="a local image file instead of the downloaded one")
    fl.add_argument("--baud", type=int)
    fl.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "firmware":
            download(a.board, a.images, a.sha256, a.trust)
            return 0
        return flash(a.board, a.port, a.config, a.dry_run, a.image, a.images, a.sha256, a.baud)
    except FlashError as e:
        print("%s: %s" % (a.cmd, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
