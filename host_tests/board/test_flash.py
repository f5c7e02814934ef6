"""A person turns a bare board into a node with make flash, and nothing reaches the board before every check passed.

make firmware / make flash, without a board: the dry run prints what would run, and every
refusal happens before a byte reaches the serial port (a real pseudo-terminal stands in for it)."""
import hashlib
import http.server
import json
import os
import pathlib
import ssl
import subprocess
import sys
import threading

import pytest

from nodekit import REPO
from nodekit.board import flash
from nodekit.broker import certs, kit

BOARDS = json.loads((REPO / "firmware" / "boards.json").read_text())


def run(*args, env=None):
    r = subprocess.run(["make", "-s", "--no-print-directory"] + list(args), cwd=REPO, capture_output=True,
                       text=True, env=dict(os.environ, **(env or {})), timeout=120)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def node_cfg(tmp_path_factory):
    out = tmp_path_factory.mktemp("kit")
    kit.make_broker(str(out), host="raspberrypi.local")
    return kit.add_node(str(out), "salon", board="huzzah")


@pytest.fixture
def serial_port():
    """A pseudo-terminal as the board's port: after a refusal, nothing may have been sent to it."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


def sent(master):
    try:
        return os.read(master, 4096)
    except BlockingIOError:
        return b""


def test_manifest_covers_the_supported_boards():
    for name in ("esp8266", "esp32", "esp32s3", "esp32c3"):
        img = BOARDS["images"][name]
        assert img["file"] in img["url"] and img["url"].startswith("https://micropython.org/")
        assert img["chip"] == name and img["offset"] in ("0x0", "0x1000")
    for name, prof in BOARDS["boards"].items():
        assert prof["image"] in BOARDS["images"], name
        assert set(prof["led"]) == {"pin", "active_low"} and prof["sensor"]["type"] == "adc"


@pytest.mark.parametrize("board", ["esp32", "esp8266-dout", "esp32c3"])
def test_dry_run_prints_the_checks_and_every_command(board, tmp_path, serial_port):
    port, master = serial_port
    cfg = _node_cfg(tmp_path, board, "chambre.json")  # a config of any name; BOARD= from it
    rc, out, err = run("flash", "PORT=" + port, "CONFIG=%s" % cfg, "DRY_RUN=1")
    assert rc == 0, err
    img = BOARDS["images"][BOARDS["boards"][board]["image"]]
    assert "ok        config %s, board %s" % (cfg, board) in out
    assert "ok        serial port %s exists" % port in out
    assert "to do     image %s not downloaded yet: make flash fetches it from %s" % (
        REPO / "firmware" / "images" / img["file"], img["url"]) in out
    assert "not made  the chip on %s" % port in out
    assert "-m esptool --port %s chip-id" % port in out
    assert "--chip %s --port %s --baud 460800 erase-flash" % (img["chip"], port) in out
    write = [l for l in out.splitlines() if "write-flash" in l]
    assert len(write) == 1 and write[0].endswith("%s %s" % (img["offset"], REPO / "firmware" / "images" / img["file"]))
    assert ("--flash-mode dout" in write[0]) == (board == "esp8266-dout")
    assert "-m nodekit.board.deploy --port %s --config %s" % (port, cfg) in out
    assert sent(master) == b""


def test_dry_run_says_which_checks_fail(tmp_path):
    cfg = _node_cfg(tmp_path, "esp32", "salon.json")
    c3 = image_file(tmp_path / "c3.bin", "esp32c3")
    rc, out, _ = run("flash", "PORT=/dev/ttyUSB-none", "CONFIG=%s" % cfg, "DRY_RUN=1", "IMAGE=%s" % c3)
    assert rc != 0
    assert "FAIL      PORT=/dev/ttyUSB-none: no such serial port" in out
    assert "FAIL      %s is an image for ESP32-C3, not for this board's esp32" % c3 in out


def test_board_and_config_must_agree(tmp_path):
    cfg = _node_cfg(tmp_path, "huzzah", "salon.json")
    rc, _, err = run("flash", "BOARD=esp32", "PORT=/dev/ttyUSB0", "CONFIG=%s" % cfg, "DRY_RUN=1")
    assert rc != 0 and err.strip().splitlines()[:1] == [
        'make flash: BOARD=esp32, but %s was made for "board": "huzzah": give BOARD=huzzah (or leave it out), '
        'or make a config for esp32 with make node BOARD=esp32' % cfg]


def test_unknown_board_missing_port_and_bad_config_are_refused(node_cfg, tmp_path):
    rc, _, err = run("flash", "BOARD=esp33", "PORT=/dev/ttyUSB0", "DRY_RUN=1", "CONFIG=" + node_cfg)
    assert rc != 0 and "make flash: BOARD=esp33, but" in err
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({k: v for k, v in json.loads(open(node_cfg).read()).items() if k != "board"}))
    rc, _, err = run("flash", "BOARD=esp33", "PORT=/dev/ttyUSB0", "DRY_RUN=1", "CONFIG=%s" % bare)
    assert rc != 0 and "make flash: BOARD=esp33: unknown board (known: esp8266, huzzah" in err
    rc, _, err = run("flash", "PORT=/dev/ttyUSB0", "DRY_RUN=1", "CONFIG=%s" % bare)
    assert rc != 0 and "make flash: BOARD: give the board, e.g. BOARD=huzzah (%s names none" % bare in err
    rc, _, err = run("flash", "DRY_RUN=1", "CONFIG=" + node_cfg)
    assert rc != 0 and "make flash: PORT: give the board's serial port" in err
    rc, _, err = run("flash", "PORT=/dev/ttyUSB-none", "CONFIG=" + node_cfg, "IMAGE=/dev/null")
    assert rc != 0 and "make flash: PORT=/dev/ttyUSB-none: no such serial port" in err
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"room": "salon", "wifi": {"ssid": "x"}, "mqtt": {"host": "pi", "tls": False},
                               "period_s": 0}))
    rc, _, err = run("flash", "BOARD=esp32", "PORT=/dev/ttyUSB0", "CONFIG=%s" % bad, "DRY_RUN=1")
    assert rc != 0 and "make flash: config: period_s: expected a number of seconds" in err


def test_a_bad_local_image_writes_nothing(tmp_path, serial_port):
    port, master = serial_port
    cfg = _node_cfg(tmp_path, "esp32", "salon.json")
    good = image_file(tmp_path / "ESP32_GENERIC.bin", "esp32")
    real = hashlib.sha256(good.read_bytes()).hexdigest()
    rc, _, err = run("flash", "PORT=" + port, "CONFIG=%s" % cfg, "IMAGE=%s" % good, "SHA256=" + "0" * 64)
    assert rc != 0 and err.strip().splitlines()[0] == (
        "make flash: sha256 of %s is %s, but SHA256= says %s: nothing was written" % (good, real, "0" * 64))
    for bad, why in ((truncated(good, tmp_path / "cut.bin"), "End of file reading segment"),
                     (image_file(tmp_path / "s3.bin", "esp32s3"), "is an image for ESP32-S3"),
                     (damaged(good, tmp_path / "damaged.bin"), "is damaged: esptool image-info finds its checksum invalid"),
                     (cfg, "is not a usable MicroPython image")):
        rc, _, err = run("flash", "PORT=" + port, "CONFIG=%s" % cfg, "IMAGE=%s" % bad)
        assert rc != 0 and why in err, err
    assert sent(master) == b""


def test_esptool_chip_names_match_the_manifest():
    assert flash.chip_matches("esp32s3", "ESP32-S3") and flash.chip_matches("esp8266", "ESP8266")
    assert not flash.chip_matches("esp32", "ESP32-S3") and not flash.chip_matches("esp32c3", "ESP32")


def _manifest(tmp_path, image, url, sha):
    m = json.loads(json.dumps(BOARDS))
    m["images"][image].update(url=url, sha256=sha)
    path = tmp_path / "boards.json"
    path.write_text(json.dumps(m))
    return path


def _node_cfg(tmp_path, board, name):
    out = tmp_path / "kit"
    if not (out / "kit.json").exists():
        kit.make_broker(str(out), host="raspberrypi.local")
    room = "r%d" % len(list((out / "nodes").glob("*"))) if (out / "nodes").exists() else "r0"
    made = pathlib.Path(kit.add_node(str(out), room, board=board))
    path = made.with_name(name)  # beside its certificate, which it names by a relative path
    os.replace(made, path)
    return path


# --- image files in esptool's formats, made at test time by esptool's own image writer -----------
_CLASSES = {"esp32": "ESP32FirmwareImage", "esp32s3": "ESP32S3FirmwareImage", "esp32c3": "ESP32C3FirmwareImage",
            "esp8266": "ESP8266ROMFirmwareImage"}
_DRAM = {"esp32": 0x3FFB0000, "esp32s3": 0x3FC88000, "esp32c3": 0x3FC88000, "esp8266": 0x3FFE8000}


def image_file(path, chip, size=64 * 1024, seed=b""):
    """A valid image for `chip` (one DRAM segment, esptool's checksum and, on ESP32s, its SHA-256
    digest), followed by filler up to `size` as a MicroPython download is followed by the rest of
    the firmware. seed: a change in the segment, so two files differ."""
    from esptool import bin_image

    img = getattr(bin_image, _CLASSES[chip])()
    img.entrypoint = 0x40100000 if chip == "esp8266" else 0x40080000
    img.segments = [bin_image.ELFSection(b".data", _DRAM[chip], (seed + bytes(range(256)) * 4)[:1024], 0)]
    written = path.with_name(path.name + ".w")
    img.save(str(written))
    if chip == "esp8266":  # esptool's ESP8266 v1 writer names its file <name>0x00000.bin
        written = path.with_name(written.name + "0x00000.bin")
    data = written.read_bytes()
    written.unlink()
    path.write_bytes(data + b"\xff" * max(0, size - len(data)))
    return path


def truncated(src, path):
    path.write_bytes(src.read_bytes()[:600])
    return path


def damaged(src, path):
    data = bytearray(src.read_bytes())
    data[200] ^= 0xFF  # inside the segment: the checksum (and digest) no longer match
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def https_ca(tmp_path_factory):
    """A CA made for the test, and a server certificate for 127.0.0.1 it signed."""
    d = tmp_path_factory.mktemp("web-ca")
    ca_key = certs.new_key()
    ca = certs.make_ca("test downloads CA", ca_key)
    key = certs.new_key()
    certs.write_cert(str(d / "ca.pem"), ca)
    certs.write_cert(str(d / "server.pem"), certs.issue(ca_key, ca, "127.0.0.1", key, 30, ips=["127.0.0.1"]))
    certs.write_key(str(d / "server.key"), key)
    return d


@pytest.fixture
def web(tmp_path, https_ca):
    """A real HTTPS server standing in for micropython.org's download area (its certificate from
    the test's CA, which the downloads are told to trust with SSL_CERT_FILE)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(https_ca / "server.pem"), str(https_ca / "server.key"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, "https://127.0.0.1:%d/" % httpd.server_port
    httpd.shutdown()
    httpd.server_close()


def firmware(tmp_path, manifest, *args, ca=None):
    env = dict(os.environ, FIRMWARE_MANIFEST=str(manifest))
    if ca:
        env["SSL_CERT_FILE"] = str(ca / "ca.pem")
    r = subprocess.run([sys.executable, "-m", "nodekit.board.flash", "firmware", "--board", "esp32",
                        "--images", str(tmp_path / "images")] + list(args), cwd=REPO, capture_output=True,
                       text=True, env=env, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_make_firmware_checks_pins_and_refuses_a_changed_upstream_file(tmp_path, web, https_ca):
    root, base = web
    served = root / "fw.bin"
    image_file(served, "esp32")
    first = hashlib.sha256(served.read_bytes()).hexdigest()
    manifest = _manifest(tmp_path, "esp32", base + "fw.bin", None)
    images = tmp_path / "images"
    dest = images / BOARDS["images"]["esp32"]["file"]

    rc, out, err = firmware(tmp_path, manifest, ca=https_ca)
    assert rc == 0, err
    assert "firmware: pinned sha256 %s for %s in %s" % (first, dest.name, images / "pins.json") in out
    assert "OK (MicroPython 1.28.0 for esp32, sha256 %s)" % first in out
    assert json.loads((images / "pins.json").read_text()) == {dest.name: first}
    assert dest.read_bytes() == served.read_bytes()

    rc, out, _ = firmware(tmp_path, manifest, ca=https_ca)  # already there and as pinned: no download
    assert rc == 0 and "downloading" not in out and "sha256 %s" % first in out

    image_file(served, "esp32", seed=b"v2")  # the file changed upstream
    second = hashlib.sha256(served.read_bytes()).hexdigest()
    dest.unlink()
    rc, _, err = firmware(tmp_path, manifest, ca=https_ca)
    assert rc == 1 and err.strip().splitlines() == [
        "make firmware: sha256 of %s is %s, but the pin in %s says %s (its first download): the file changed "
        "upstream or arrived damaged, and was not kept. If you trust the new file: make firmware BOARD=esp32 "
        "SHA256=%s" % (dest.name, second, images / "pins.json", first, second)]
    assert not dest.exists() and not list(images.glob("*.part"))

    rc, out, err = firmware(tmp_path, manifest, "--sha256", second, ca=https_ca)  # accepted: pinned anew
    assert rc == 0, err
    assert json.loads((images / "pins.json").read_text()) == {dest.name: second}


def test_make_firmware_refuses_bad_images_each_with_its_reason(tmp_path, web, https_ca):
    root, base = web
    good = image_file(tmp_path / "good.bin", "esp32")
    cases = {"cut.bin": (truncated(good, root / "cut.bin"), "is not a usable MicroPython image (esptool "
                         "image-info: End of file reading segment"),
             "c3.bin": (image_file(root / "c3.bin", "esp32c3"), "is an image for ESP32-C3, not for this board's esp32"),
             "damaged.bin": (damaged(good, root / "damaged.bin"), "is damaged: esptool image-info finds its "
                             "checksum invalid"),
             "page.bin": ((root / "page.bin"), "is not a usable MicroPython image (esptool image-info: This is "
                          "not a valid image")}
    (root / "page.bin").write_text("<html>moved</html>")
    for name, (_, why) in cases.items():
        rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + name, None), ca=https_ca)
        assert rc == 1 and why in err, (name, err)
        assert not (tmp_path / "images" / "pins.json").exists() and not list((tmp_path / "images").iterdir())

    # A wrong SHA256=: said once, with the next step; nothing kept.
    good_hash = hashlib.sha256(good.read_bytes()).hexdigest()
    (root / "fw.bin").write_bytes(good.read_bytes())
    manifest = _manifest(tmp_path, "esp32", base + "fw.bin", None)
    rc, _, err = firmware(tmp_path, manifest, "--sha256", "ab" * 32, ca=https_ca)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and err.count("sha256") == 1
    assert "is %s, not the SHA256= given (%s)" % (good_hash, "ab" * 32) in err and "SHA256=%s" % good_hash in err
    assert not list((tmp_path / "images").iterdir())

    # boards.json's hash wins over SHA256=.
    rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + "fw.bin", "cd" * 32), "--sha256", good_hash,
                          ca=https_ca)
    assert rc == 1 and "but firmware/boards.json says %s" % ("cd" * 32) in err


def test_a_failed_download_says_what_to_do(tmp_path, web, https_ca):
    _, base = web
    rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + "missing.bin", None), ca=https_ca)
    assert rc == 1 and "make firmware: cannot download %smissing.bin (HTTP 404 File not found)" % base in err
    assert "IMAGE=path/to/file.bin" in err
    # The certificate is checked: without the test's CA the same server is refused.
    rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + "missing.bin", None))
    assert rc == 1 and "CERTIFICATE_VERIFY_FAILED" in err
    rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", "http://127.0.0.1:9/fw.bin", None))
    assert rc == 1 and "images come over HTTPS only" in err


def test_with_everything_checked_esptool_asks_the_port_for_its_chip(tmp_path, serial_port):
    # The last check before anything is written: a pseudo-terminal has no chip behind it.
    port, _ = serial_port
    cfg = _node_cfg(tmp_path, "esp32", "salon.json")
    good = image_file(tmp_path / "ESP32_GENERIC.bin", "esp32")
    rc, out, err = run("flash", "PORT=" + port, "CONFIG=%s" % cfg, "IMAGE=%s" % good)
    assert rc != 0 and "-m esptool --port %s chip-id" % port in out, out + err
    assert "make flash: esptool found no chip on %s: " % port in err and "Traceback" not in err, err
    assert "erase-flash" not in out


def test_doctor_and_flash_take_a_config_by_any_name(broker, tmp_path):
    named = tmp_path / "salon.json"
    cfg = broker.node_config("salon")
    named.write_text(cfg.read_text())
    (tmp_path / "ca.der").write_bytes((cfg.parent / "ca.der").read_bytes())
    r = subprocess.run([sys.executable, "-m", "nodekit.doctor", "--config", str(named)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert "config" in r.stdout and "cannot read" not in r.stdout, r.stdout + r.stderr
    port = tmp_path / "ttyUSB0"
    port.touch()
    r = subprocess.run([sys.executable, "-m", "nodekit.board.flash", "flash", "--board", "huzzah", "--port",
                        str(port), "--config", str(named), "--dry-run"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    # Checked with the node's own rules, then handed to make deploy, which copies it as config.json.
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nodekit.board.deploy --port %s --config %s" % (port, named) in r.stdout, r.stdout
