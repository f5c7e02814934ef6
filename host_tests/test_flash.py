"""make firmware / make flash, without a board: the dry run prints what would run, and every
refusal happens before a byte reaches the serial port (a real pseudo-terminal stands in for it)."""
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from nodekit import REPO, flash, kit

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
def test_dry_run_prints_every_command_and_names_the_image(board, node_cfg):
    rc, out, err = run("flash", "BOARD=" + board, "PORT=/dev/ttyUSB9", "CONFIG=" + node_cfg, "DRY_RUN=1")
    assert rc == 0, err
    img = BOARDS["images"][BOARDS["boards"][board]["image"]]
    assert "not downloaded yet: make firmware BOARD=%s" % board in out
    assert "-m esptool --port /dev/ttyUSB9 chip-id" in out
    assert "--chip %s --port /dev/ttyUSB9 --baud 460800 erase-flash" % img["chip"] in out
    write = [l for l in out.splitlines() if "write-flash" in l]
    assert len(write) == 1 and write[0].endswith("%s %s" % (img["offset"], REPO / "firmware" / "images" / img["file"]))
    assert ("--flash-mode dout" in write[0]) == (board == "esp8266-dout")
    assert "-m nodekit.deploy --port /dev/ttyUSB9 --config " + node_cfg in out


def test_unknown_board_missing_port_and_bad_config_are_refused(node_cfg, tmp_path):
    rc, _, err = run("flash", "BOARD=esp33", "PORT=/dev/ttyUSB0", "DRY_RUN=1", "CONFIG=" + node_cfg)
    assert rc != 0 and "flash: unknown BOARD=esp33 (known: esp8266, huzzah" in err
    rc, _, err = run("flash", "BOARD=esp32", "DRY_RUN=1", "CONFIG=" + node_cfg)
    assert rc != 0 and "flash: give the board's serial port" in err
    rc, _, err = run("flash", "BOARD=esp32", "PORT=/dev/ttyUSB-none", "CONFIG=" + node_cfg, "IMAGE=/dev/null")
    assert rc != 0 and "flash: no serial port /dev/ttyUSB-none" in err
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"room": "salon", "wifi": {"ssid": "x"}, "mqtt": {"host": "pi", "tls": False},
                               "period_s": 0}))
    rc, _, err = run("flash", "BOARD=esp32", "PORT=/dev/ttyUSB0", "CONFIG=%s" % bad, "DRY_RUN=1")
    assert rc != 0 and "flash: config: period_s: expected a number of seconds" in err


def test_a_wrong_checksum_writes_nothing(node_cfg, tmp_path, serial_port):
    port, master = serial_port
    image = tmp_path / "ESP32_GENERIC.bin"
    image.write_bytes(os.urandom(4096))
    real = hashlib.sha256(image.read_bytes()).hexdigest()
    rc, _, err = run("flash", "BOARD=esp32", "PORT=" + port, "CONFIG=" + node_cfg, "IMAGE=%s" % image,
                     "SHA256=" + "0" * 64)
    assert rc != 0 and "sha256 is %s, expected %s" % (real, "0" * 64) in err and "nothing was written" in err
    # Not pinned anywhere (the manifest's hashes are null until pinned): refused as well.
    rc, _, err = run("flash", "BOARD=esp32", "PORT=" + port, "CONFIG=" + node_cfg, "IMAGE=%s" % image,
                     env={"FIRMWARE_MANIFEST": str(_manifest(tmp_path, "esp32", "http://127.0.0.1:9/x", None))})
    assert rc != 0 and "has no sha256 to check it against" in err
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


@pytest.fixture
def web(tmp_path):
    """A real HTTP server standing in for micropython.org's download area."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, "http://127.0.0.1:%d/" % httpd.server_port
    httpd.shutdown()
    httpd.server_close()


def firmware(tmp_path, manifest, *args):
    r = subprocess.run([sys.executable, "-m", "nodekit.flash", "firmware", "--board", "esp32",
                        "--images", str(tmp_path / "images")] + list(args), cwd=REPO, capture_output=True,
                       text=True, env=dict(os.environ, FIRMWARE_MANIFEST=str(manifest)), timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_make_firmware_downloads_checks_and_refuses_a_wrong_image(tmp_path, web):
    root, base = web
    data = os.urandom(100000)
    (root / "fw.bin").write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "images" / BOARDS["images"]["esp32"]["file"]

    rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + "fw.bin", "ab" * 32))
    assert rc == 1 and "sha256 is %s, expected %s" % (good, "ab" * 32) in err
    assert not dest.exists()  # a wrong file is not left to be flashed later

    rc, out, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + "fw.bin", good))
    assert rc == 0 and "OK (MicroPython 1.28.0 for esp32, sha256 %s)" % good in out
    assert dest.read_bytes() == data

    rc, _, err = firmware(tmp_path, _manifest(tmp_path, "esp32", base + "missing.bin", good), "--images",
                          str(tmp_path / "other"))
    assert rc == 1 and "firmware: cannot download %smissing.bin" % base in err


def test_an_unpinned_image_needs_a_hash_or_trust(tmp_path, web):
    root, base = web
    data = os.urandom(5000)
    (root / "fw.bin").write_bytes(data)
    manifest = _manifest(tmp_path, "esp32", base + "fw.bin", None)
    rc, _, err = firmware(tmp_path, manifest)
    assert rc == 1 and "has no sha256 to check it against" in err
    rc, out, _ = firmware(tmp_path, manifest, "--trust")
    assert rc == 0 and hashlib.sha256(data).hexdigest() in out
    pins = json.loads((tmp_path / "images" / "pins.json").read_text())
    assert pins == {BOARDS["images"]["esp32"]["file"]: hashlib.sha256(data).hexdigest()}
