"""The simulated board is never kinder than the port it claims to be.

The simulated board keeps each port's hardware and Wi-Fi rules (MicroPython v1.28.0,
ports/esp8266 and ports/esp32): a short script runs as board code (boot.py through
nodekit/sim/simboard/start.py, the board's own import order and stand-ins) under each runtime
and each chip, and prints what the port would give."""
import json
import os
import subprocess
import textwrap

import pytest

from nodekit import REPO
from nodekit.sim import simnode


def board_run(tmp_path, runtime, chip, code, hw=None, files=None, heap=None):
    """Run code as the board's boot.py on a simulated `chip` (the VM: in `heap` bytes);
    return what it printed."""
    repo = tmp_path / ("repo-" + chip)
    repo.mkdir(exist_ok=True)
    (repo / "boot.py").write_text(TRY + textwrap.dedent(code))
    (repo / "main.py").write_text("")
    hw = hw or tmp_path / ("hw-" + chip)
    hw.mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        (hw / name).write_text(text)
    argv, env = simnode.node_command(runtime, heap)
    env = dict(os.environ, **env)
    env.update(NODE_REPO=str(repo), NODE_LIB=str(REPO / "lib"), SIMBOARD_DIR=str(hw), SIMBOARD_PORT=chip)
    p = subprocess.run(argv, cwd=hw, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3, p.stdout + p.stderr  # start.py: main.py returned
    return p.stdout


# What a failing call raised, as one comparable line: "ValueError: invalid pin".
TRY = """
def tr(label, f, *a, **k):
    try:
        r = f(*a, **k)
        print(label, "ok", r if type(r) in (int, bool, str, bytes) else "")
    except Exception as e:
        print(label, type(e).__name__ + ":", e.args[0] if e.args else "")
"""


def lines(out):
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


@pytest.mark.parametrize("chip", ["esp8266", "esp32"])
def test_watchdog_takes_what_the_port_takes(tmp_path, runtime, chip):
    out = lines(board_run(tmp_path, runtime, chip, """
        import machine
        tr("long", machine.WDT, timeout=60000)
        tr("file", lambda: open("wdt").read())  # what nodekit/sim/simnode.py times the board by
        tr("id1", machine.WDT, 1, 5000)
        tr("zero", machine.WDT, timeout=0)
        tr("default", machine.WDT)
        print("deinit", hasattr(machine.WDT(), "deinit"))
    """))
    if chip == "esp8266":  # ports/esp8266/machine_wdt.c: 5000 ms and id 0, nothing else
        assert out["long"] == "ValueError: "
        assert out["zero"] == "ValueError: "
    else:  # ports/esp32/machine_wdt.c: any timeout > 0
        assert out["long"].startswith("ok") and out["file"] == "ok 60000"
        assert out["zero"] == "ValueError: WDT timeout too short"
    assert out["id1"] == "ValueError: "
    assert out["default"].startswith("ok")
    assert out["deinit"] == "False"  # neither port can stop it


def test_unique_id_is_the_ports_length(tmp_path, runtime):
    for chip, uid, expected in (
            ("esp8266", "5ccf7f123456", "56341200"),  # the SDK's chip id: the MAC's last 3 bytes, little-endian
            ("esp8266", "0a0b0c0d", "0a0b0c0d"),
            ("esp32", "5ccf7f123456", "5ccf7f123456")):  # the MAC
        out = board_run(tmp_path, runtime, chip, "import machine, binascii\n"
                        "print('uid', binascii.hexlify(machine.unique_id()).decode())\n", files={"unique_id": uid})
        assert lines(out)["uid"] == expected, (chip, uid)


PINS = {
    # chip: (valid GPIOs, invalid ones), from ports/esp8266/machine_pin.c and ports/esp32/machine_pin.h
    "esp8266": ((0, 2, 5, 9, 10, 12, 16), (6, 7, 8, 11, 17, 34)),
    "esp32": ((0, 2, 16, 23, 25, 32, 39), (20 + 4, 28, 31, 40)),
    "esp32s3": ((0, 1, 21, 33, 47, 48), (22, 26, 32, 49)),
    "esp32c3": ((0, 8, 13, 20, 21), (14, 18, 19, 22)),
}


def profile_pins(chip):
    """(LED pins, ADC pins) of firmware/boards.json's profiles for chip, with the config's
    defaults (led.pin 2, sensor.pin 0) for the two ports a config without a board runs on."""
    with open(REPO / "firmware" / "boards.json") as f:
        manifest = json.load(f)
    leds, adcs = ([2], [0]) if chip in ("esp8266", "esp32") else ([], [])
    for prof in manifest["boards"].values():
        if manifest["images"][prof["image"]]["chip"] == chip:
            leds.append(prof["led"]["pin"])
            adcs.append(prof["sensor"]["pin"])
    return leds, adcs


@pytest.mark.parametrize("chip", sorted(PINS))
def test_pins_are_the_chips(tmp_path, runtime, chip):
    good, bad = PINS[chip]
    good = good + tuple(profile_pins(chip)[0])  # every profile's LED must stay valid
    code = "import machine\n" + "".join('tr("p%d", machine.Pin, %d, machine.Pin.IN)\n' % (n, n)
                                              for n in good + bad)
    out = lines(board_run(tmp_path, runtime, chip, code))
    for n in good:
        assert out["p%d" % n].startswith("ok"), (n, out)
    for n in bad:
        assert out["p%d" % n] == "ValueError: invalid pin", (n, out)


@pytest.mark.parametrize("chip", ["esp8266", "esp32"])
def test_pin_rules(tmp_path, runtime, chip):
    out = lines(board_run(tmp_path, runtime, chip, """
        import machine
        P = machine.Pin
        tr("p16pull", P, 16, P.IN, P.PULL_UP)
        tr("p34out", P, 34, P.OUT) if %r != "esp8266" else None
        tr("nomode", P, 2, value=1)
        print("freq", machine.freq())
        tr("f240", machine.freq, 240000000)
        tr("f160", machine.freq, 160000000)
        print("freq2", machine.freq())
        print("pulldown", hasattr(P, "PULL_DOWN"))
        print("consts", P.IN, P.OUT, P.OPEN_DRAIN, P.PULL_UP)
    """ % chip))
    if chip == "esp8266":
        assert out["p16pull"] == "ValueError: Pin(16) doesn't support pull"
        assert out["nomode"] == "TypeError: 'mode' argument required"  # machine_pin.c: MP_ARG_REQUIRED
        assert out["freq"] == "80000000"  # docs/esp8266/general.rst; modmachine.c: 80 or 160 only
        assert out["f240"] == "ValueError: frequency can only be either 80Mhz or 160MHz"
        assert out["pulldown"] == "False"  # commented out in ports/esp8266/modmachine.h
        assert out["consts"] == "0 1 2 1"
    else:
        assert out["p16pull"].startswith("ok")
        assert out["p34out"] == "ValueError: pin can only be input"
        assert out["nomode"].startswith("ok")  # esp32/machine_pin.c: mode optional
        assert out["freq"] == "160000000" and out["f240"].startswith("ok")  # esp32/modmachine.c
        assert out["pulldown"] == "True"
        assert out["consts"] == "1 3 7 2"
    assert out["freq2"] == "160000000"


@pytest.mark.parametrize("chip", ["esp8266", "esp32", "esp32s3", "esp32c3"])
def test_adc_inputs_are_the_chips(tmp_path, runtime, chip):
    probe = {"esp8266": (0, 1, 2), "esp32": (34, 0, 5), "esp32s3": (1, 20, 0), "esp32c3": (3, 5, 6)}[chip]
    good = probe[:2] + tuple(profile_pins(chip)[1])  # every profile's sensor must stay valid
    out = lines(board_run(tmp_path, runtime, chip, "import machine\n" + "".join(
        'tr("a%d", machine.ADC, %d)\n' % (n, n) for n in good + probe[2:])))
    bad = probe[2]
    for n in good:
        assert out["a%d" % n].startswith("ok"), (n, out)
    if chip == "esp8266":
        assert out["a2"] == "ValueError: ADC(2) doesn't exist"  # ports/esp8266/machine_adc.c
    else:
        assert out["a%d" % bad] == "ValueError: invalid pin"  # ports/esp32/machine_adc.c


@pytest.mark.parametrize("chip,names", [
    # The simulator's events (1 power-on, 3 watchdog, 5 machine.reset()) as each port reports them.
    ("esp8266", {"1": "0 pwron", "3": "3 wdt", "5": "4 soft"}),
    ("esp32", {"1": "1 pwron", "3": "3 wdt", "5": "2 hard"}),
])
def test_reset_causes_are_the_ports_values(tmp_path, runtime, chip, names):
    for event, expected in names.items():
        out = board_run(tmp_path, runtime, chip, """
            import machine
            from node.start import reset_cause
            print("cause", machine.reset_cause(), reset_cause())
        """, files={"reset_cause": event})
        assert lines(out)["cause"] == expected, (chip, event)
    out = board_run(tmp_path, runtime, chip, "import machine\nprint('c', machine.PWRON_RESET, machine.HARD_RESET, "
                    "machine.WDT_RESET, machine.DEEPSLEEP_RESET, machine.SOFT_RESET)\n")
    assert lines(out)["c"] == ("0 6 1 5 4" if chip == "esp8266" else "1 2 3 4 5")


def test_wlan_status_codes_are_the_ports(tmp_path, runtime):
    code = """
        import network
        print("codes", network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_WRONG_PASSWORD,
              network.STAT_NO_AP_FOUND, network.STAT_CONNECT_FAIL, network.STAT_GOT_IP)
        print("beacon", hasattr(network, "STAT_BEACON_TIMEOUT"))
    """
    out = lines(board_run(tmp_path, runtime, "esp8266", code))  # ports/esp8266/modnetwork_globals.h
    assert out["codes"] == "0 1 2 3 4 5" and out["beacon"] == "False"
    out = lines(board_run(tmp_path, runtime, "esp32", code))  # ports/esp32/modnetwork.h, ESP-IDF's reasons
    assert out["codes"] == "1000 1001 202 201 203 1010" and out["beacon"] == "True"


def test_esp8266_factory_access_point_is_on_until_switched_off(tmp_path, runtime):
    hw = tmp_path / "hw"
    code = """
        import network
        ap = network.WLAN(network.AP_IF)
        print("ap", ap.active())
        ap.active(False)
    """
    assert lines(board_run(tmp_path, runtime, "esp8266", code, hw=hw))["ap"] == "True"
    # The SDK stored the mode in flash: after a reset the AP stays off.
    assert lines(board_run(tmp_path, runtime, "esp8266", code, hw=hw))["ap"] == "False"
    assert int((hw / "wifi_opmode").read_text()) & 2 == 0
    assert lines(board_run(tmp_path, runtime, "esp32", code))["ap"] == "False"  # off out of the box


REJOIN = """
import json, network, time
def ap(up):
    with open("ap.json", "w") as f:
        json.dump({"ssid": "maison", "password": "pw", "up": up}, f)
def wait(cond):
    t = time.ticks_ms()
    while not cond() and time.ticks_diff(time.ticks_ms(), t) < 5000:
        time.sleep_ms(20)
w = network.WLAN(network.STA_IF)
w.active(True)
ap(True)
w.connect("maison", "pw")
tr("again", w.connect, "maison", "pw")
wait(w.isconnected)
print("up", w.isconnected())
ap(False)
wait(lambda: w.status() == network.STAT_NO_AP_FOUND)
print("down", w.isconnected(), w.status() == network.STAT_NO_AP_FOUND)
tr("during", w.connect, "maison", "pw")
ap(True)
wait(w.isconnected)
print("back", w.isconnected())
"""


def test_wifi_drop_and_connect_while_the_driver_rejoins(tmp_path, runtime):
    for chip in ("esp32", "esp8266"):
        out = lines(board_run(tmp_path, runtime, chip, REJOIN))
        assert out["up"] == "True" and out["down"] == "False True", (chip, out)
        assert out["back"] == "True", (chip, out)  # rejoined by itself, no connect() needed
        if chip == "esp32":
            # connect() while the driver is still joining: ESP_ERR_WIFI_CONN (micropython#17661)
            assert out["again"] == "OSError: Wifi Internal Error"
            assert out["during"] == "OSError: Wifi Internal Error"
        else:
            assert out["again"].startswith("ok") and out["during"].startswith("ok")


def test_wifi_error_file_makes_calls_fail_as_the_port_does(tmp_path, runtime):
    code = """
        import network
        w = network.WLAN(network.STA_IF)
        tr("active", w.active, True)
        tr("connect", w.connect, "x", "y")
        tr("status", w.status)
    """
    for chip, active, connect in (("esp8266", "Cannot update i/f status", "Cannot connect to AP"),
                                  ("esp32", "WiFi Out of Memory", "Wifi Internal Error")):
        out = lines(board_run(tmp_path, runtime, chip, code, files={"wifi_error": "active connect"}))
        assert out["active"] == "OSError: " + active
        assert out["connect"] == "OSError: " + connect
        assert out["status"].startswith("ok")


@pytest.mark.parametrize("chip", ["esp8266", "esp32"])
def test_name_resolution_is_the_ports(tmp_path, runtime, chip):
    out = lines(board_run(tmp_path, runtime, chip, """
        import socket
        import usocket
        print("same", socket.getaddrinfo is usocket.getaddrinfo)
        tr("local", usocket.getaddrinfo, "raspberrypi.local", 1883)
        tr("bad", usocket.getaddrinfo, "no-such-host.invalid", 1883)
        print("localhost", usocket.getaddrinfo("localhost", 1883)[0][-1] is not None)
    """))
    assert out["localhost"] == "True"
    if runtime == "micropython":
        assert out["same"] == "True"  # umqtt.simple 1.3.4 imports usocket, newer ones socket
    if chip == "esp8266":
        # No mDNS on the ESP8266: lwIP's failed lookup (extmod/modlwip.c) is OSError(-2).
        assert out["local"] == "OSError: -2"
        assert out["bad"] == "OSError: -2"
    else:
        assert out["bad"] == "OSError: -202"  # ports/esp32/modsocket.c: -EAI_FAIL


# The heap filled with 1 KB pieces, then `free` of them let go: every one ("all"), or every
# other one so the free heap is in 1 KB holes ("holes"). Then the node's TLS wrapper is asked
# for a handshake on a stand-in socket: a refusal is the guard's MemoryError, anything else
# (ssl's complaint that the stand-in socket cannot be written: the ClientHello) means the
# handshake was tried.
_FULL_HEAP = """
    import gc
    from node import session

    class Sock:
        def settimeout(self, t):
            pass

    session._net.tls = {}
    hold = [None] * 400
    pad = [None] * 4000
    n = i = 0
    step = 1 if HOW == "all" else 2
    gc.collect()
    try:
        while n < len(hold):
            hold[n] = bytearray(1000)
            n += 1
    except MemoryError:
        pass
    try:
        while i < len(pad):
            pad[i] = bytearray(8)
            i += 1
    except MemoryError:
        pass
    i = n - FREE * step
    while i < n:
        hold[i] = None
        i += step
    tr("tight", session._net.wrap_socket, Sock())
    hold = pad = None
    tr("ample", session._net.wrap_socket, Sock())
"""


@pytest.mark.parametrize("chip", ["esp8266", "esp32"])
@pytest.mark.parametrize("how,free,refusal", [
    ("all", 8, "MemoryError: 8"),  # "8xxx bytes free, a TLS handshake needs about 16896"
    ("holes", 20, "MemoryError: no free block of 5316 bytes for the TLS handshake"),
])
def test_no_tls_handshake_starts_that_axtls_cannot_finish(tmp_path, chip, how, free, refusal):
    # axTLS allocates from the GC heap and crashes an ESP8266 when that fails
    # (ports/esp8266/posix_helpers.c); an ESP32's mbedTLS has the IDF heap. VM only: CPython
    # cannot be given a heap this small.
    if not simnode.micropython_path():
        pytest.skip("the MicroPython VM is not available here")
    code = _FULL_HEAP.replace("FREE", str(free)).replace("HOW", repr(how))
    out = lines(board_run(tmp_path, "micropython", chip, code, heap=256 * 1024))
    if chip == "esp8266":
        assert out["tight"].startswith(refusal), out
        if how == "all":
            assert out["tight"].endswith("bytes free, a TLS handshake needs about 16896"), out
    else:  # mbedTLS: tried, whatever the heap (short of it, the port's own MemoryError)
        assert "TLS handshake" not in out["tight"], out
    tried = ("AttributeError: 'Sock' object has no attribute 'write'",  # simboard/axtls.py
             "OSError: stream operation not supported")  # the VM's own ssl (extmod/modtls_*.c)
    assert out["ample"] in tried, out


@pytest.mark.parametrize("chip", ["esp8266", "esp32"])
def test_utime_is_the_boards_time_and_ticks_add_is_bounded(tmp_path, runtime, chip):
    out = lines(board_run(tmp_path, runtime, chip, """
        import time
        import utime
        print("same", utime is time or utime.ticks_ms is time.ticks_ms)
        tr("over", time.ticks_add, 0, 1 << 29)
        tr("under", time.ticks_add, 0, -(1 << 29))
        tr("top", time.ticks_add, 0, (1 << 29) - 1)
        tr("bottom", time.ticks_add, 0, 1 - (1 << 29))
    """))
    # py/objmodule.c: `import utime` forces the built-in time, the board's clock and ticks.
    assert out["same"] == "True"
    # extmod/modtime.c time_ticks_add(): |delta| < TICKS_PERIOD / 2 (2**30 on both ports)
    assert out["over"] == out["under"] == "OverflowError: ticks interval overflow"
    assert out["top"] == "ok %d" % ((1 << 29) - 1) and out["bottom"] == "ok %d" % ((1 << 29) + 1)


@pytest.mark.parametrize("chip,want", [
    # ports/esp8266/network_wlan.c: rssi from the SDK (31, its "invalid", unless connected),
    # none on the AP; scan() only on the station object; WLAN(5) is ValueError().
    ("esp8266", {"rssi_off": "ok 31", "rssi_ap": "ValueError: unknown status param",
                 "scan_ap": "OSError: STA required", "wlan5": "ValueError: "}),
    # ports/esp32/network_wlan.c: rssi needs the station, connected (network_common.c); scan()
    # from either object while the station is active.
    ("esp32", {"rssi_off": "OSError: Wifi Not Connected", "rssi_ap": "OSError: STA required",
               "scan_ap": "ok ", "wlan5": "ValueError: invalid WLAN interface identifier"}),
])
def test_wlan_calls_fail_as_each_port_does(tmp_path, runtime, chip, want):
    out = lines(board_run(tmp_path, runtime, chip, """
        import network
        w = network.WLAN(network.STA_IF)
        w.active(True)
        ap = network.WLAN(network.AP_IF)
        tr("rssi_off", w.status, "rssi")
        tr("rssi_ap", ap.status, "rssi")
        tr("scan_ap", ap.scan)
        tr("wlan5", network.WLAN, 5)
    """))
    for k, v in want.items():
        assert out[k] == v, (k, out)
