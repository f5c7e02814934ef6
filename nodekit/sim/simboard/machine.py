# The simulated board's `machine`: what the node's hardware calls reach on the PC.
# MicroPython-compatible, so it serves CPython and the MicroPython VM alike.
# It is the port _port.CHIP names, rule for rule, each copied from MicroPython v1.28.0's
# source and cited beside it: the simulated board is never kinder than the port.
#
# Board state lives in files under $SIMBOARD_DIR, where tests and tools read and
# set it: pin<N> (an output's level, or an input's level to read), adc<N> (an
# input's raw value, or "error" / "hang" / "memory" to make the read fail, hang
# or raise MemoryError), unique_id (hex: the ESP32's 6-byte MAC, or on an ESP8266
# its 4-byte chip id; a 6-byte MAC there gives the chip id the SDK derives from it),
# reset_cause (written by the simulator: 1 power-on, 3 the watchdog fired, 5 machine.reset();
# reset_cause() answers with the port's own value for that event), wdt (the watchdog's
# timeout in ms, refreshed by feed(): the simulator resets the board when it goes stale).
import os
import sys
import time
from binascii import unhexlify

import _port

_DIR = os.getenv("SIMBOARD_DIR") or "."
# make bench: each output pin change is appended here with a wall-clock time_ns, which
# the benchmark compares with tshark's timestamps (the same CLOCK_REALTIME).
_PIN_LOG = os.getenv("SIMBOARD_PIN_LOG")
RESET_EXIT = 75  # the exit status the simulator reads as "the board reset"
_CHIP = _port.CHIP

if _port.ESP8266:
    # ports/esp8266/modmachine.c: the SDK's rst_info reasons (user_interface.h: REASON_DEFAULT_RST 0,
    # REASON_WDT_RST 1, REASON_EXCEPTION_RST 2, REASON_SOFT_WDT_RST 3, REASON_SOFT_RESTART 4,
    # REASON_DEEP_SLEEP_AWAKE 5, REASON_EXT_SYS_RST 6); reset_cause() returns the raw reason.
    PWRON_RESET = 0
    WDT_RESET = 1
    SOFT_RESET = 4
    DEEPSLEEP_RESET = 5
    HARD_RESET = 6
    # The simulator's events: machine.WDT is the SDK's software watchdog (machine_wdt.c feeds
    # system_soft_wdt_feed), so its expiry is REASON_SOFT_WDT_RST, 3, which machine does not
    # name; machine.reset() is system_restart(): REASON_SOFT_RESTART.
    _CAUSES = {1: PWRON_RESET, 3: 3, 5: SOFT_RESET}
else:
    # ports/esp32/modmachine.c: reset_reason_t, PWRON_RESET = 1 ... SOFT_RESET = 5.
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    # mp_machine_reset_cause(): ESP_RST_TASK_WDT -> WDT_RESET; machine.reset() is esp_restart(),
    # ESP_RST_SW -> HARD_RESET (SOFT_RESET is only a soft reboot of the VM, Ctrl-D).
    _CAUSES = {1: PWRON_RESET, 3: WDT_RESET, 5: HARD_RESET}

# The GPIOs each chip's pin table holds; Pin() raises ValueError("invalid pin") for others.
if _port.ESP8266:
    # ports/esp8266/machine_pin.c pyb_pin_obj[]: 6-8 and 11 (the flash) are empty entries.
    _PINS = (0, 1, 2, 3, 4, 5, 9, 10, 12, 13, 14, 15, 16)
elif _CHIP == "esp32":
    # ports/esp32/machine_pin.h, CONFIG_IDF_TARGET_ESP32 without SPIRAM (ESP32_GENERIC).
    _PINS = tuple(range(24)) + (25, 26, 27) + tuple(range(32, 40))
elif _CHIP == "esp32s3":
    # ports/esp32/machine_pin.h, ESP32S3 with quad SPIRAM (ESP32_GENERIC_S3: sdkconfig.spiram_sx,
    # so no GPIO26) and MICROPY_HW_ESP32S3_EXTENDED_IO (47, 48).
    _PINS = tuple(range(22)) + tuple(range(33, 49))
else:
    # ports/esp32/machine_pin.h, ESP32C3 with the USB Serial/JTAG console (18, 19 taken).
    _PINS = tuple(range(14)) + (20, 21)

# ADC inputs: ESP8266 ADC(0) (the A0 pin) and ADC(1) (VDD); ESP32s by GPIO (machine_adc.c madc_obj[]).
_ADCS = {"esp8266": (0, 1),
         "esp32": (36, 37, 38, 39, 32, 33, 34, 35, 4, 0, 2, 15, 13, 12, 14, 27, 25, 26),
         "esp32s3": tuple(range(1, 21)),
         "esp32c3": (0, 1, 2, 3, 4, 5)}[_CHIP]


def _read(name):
    try:
        with open(_DIR + "/" + name) as f:
            return f.read().strip()
    except OSError:
        return None


def _write(name, text):
    with open(_DIR + "/" + name, "w") as f:
        f.write(text)


def _pin_id(id):
    # ports/esp8266/machine_pin.c mp_obj_get_pin_obj(), ports/esp32/machine_pin.c machine_pin_find().
    if isinstance(id, Pin):
        return id._id
    if type(id) is int and id in _PINS:
        return id
    raise ValueError("invalid pin")


class Pin:
    if _port.ESP8266:
        # ports/esp8266/modmachine.h: GPIO_MODE_*, GPIO_PULL_UP; PULL_DOWN is commented out there.
        IN = 0
        OUT = 1
        OPEN_DRAIN = 2
        PULL_UP = 1
        IRQ_RISING = 1
        IRQ_FALLING = 2
    else:
        # ports/esp32/machine_pin.c locals: the IDF's gpio_mode_t and the port's pull bits.
        IN = 1
        OUT = 3
        OPEN_DRAIN = 7
        PULL_UP = 2
        PULL_DOWN = 1
        IRQ_RISING = 1
        IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._id = _pin_id(id)
        self._mode = -1
        self._pull = -1
        self._v = None
        if mode != -1 or pull != -1 or value is not None:
            self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        if _port.ESP8266 and mode == -1:
            # esp8266/machine_pin.c pyb_pin_obj_init_helper(): mode is MP_ARG_REQUIRED (py/argcheck.c
            # words it); ESP32's is optional (esp32/machine_pin.c).
            raise TypeError("'mode' argument required")
        if _port.ESP8266 and self._id == 16 and pull not in (-1, None):
            raise ValueError("Pin(16) doesn't support pull")  # esp8266/machine_pin.c
        # esp32/machine_pin.c: GPIO_FIRST_NON_OUTPUT is 34 on the ESP32 (34-39 are inputs only).
        if _CHIP == "esp32" and self._id >= 34 and mode not in (-1, None) and mode & 2:
            raise ValueError("pin can only be input")
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self._mode in (Pin.OUT, Pin.OPEN_DRAIN):
                return self._v or 0
            level = _read("pin%s" % self._id)
            if level:
                return int(level)
            return 1 if self._pull == Pin.PULL_UP else 0  # nothing wired: the pull wins
        v = 1 if v else 0
        if v != self._v:
            if _PIN_LOG:
                # First: the file writes below are the simulator's, not the pin's. The PC's
                # clock (never the board's RTC, whose time.time_ns() may read 2000).
                t = __import__("_rtc")._host.time_ns()
                with open(_PIN_LOG, "a") as f:
                    f.write("%s %d %d\n" % (self._id, v, t))
            self._v = v
            _write("pin%s" % self._id, str(v))
            _write("pin%s.driven" % self._id, "1")  # the board drives it: a reset releases it (sim.py)
            print("         board pin %s = %d" % (self._id, v))

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class ADC:
    def __init__(self, pin, atten=None):
        if _port.ESP8266:
            # ports/esp8266/machine_adc.c: a channel number, 0 or 1 (mp_obj_get_int: a Pin is a TypeError).
            if atten is not None:
                raise TypeError("function doesn't take keyword arguments")  # exactly one argument
            if type(pin) is not int:
                raise TypeError("can't convert %s to int" % type(pin).__name__)
            if pin not in _ADCS:
                raise ValueError("ADC(%d) doesn't exist" % pin)
            self._pin = pin
        else:
            # ports/esp32/machine_adc.c: a Pin or GPIO number, which must be one of the ADC's.
            pin = _pin_id(pin)
            if pin not in _ADCS:
                raise ValueError("invalid pin")
            self._pin = pin

    def read_u16(self):
        v = _read("adc%s" % self._pin)
        if v == "error":
            raise OSError(5)  # EIO, as a failing I2C/ADC read gives
        if v == "memory":
            raise MemoryError("memory allocation failed (simulated)")
        if v == "hang":
            while _read("adc%s" % self._pin) == "hang":
                time.sleep_ms(100)
            return self.read_u16()
        if v:
            return int(v)
        # Nothing wired in: a slow wobble around mid-scale, like a floating input.
        return 32768 + (time.ticks_ms() // 100) % 1000

    def read(self):
        # ESP8266 read() is the raw 10 bits (machine_adc.c); ESP32 read() the raw 12 bits.
        return self.read_u16() >> (6 if _port.ESP8266 else 4)


def dht_readinto(pin, buf):
    """machine.dht_readinto (drivers/dht/dht.c; MICROPY_PY_MACHINE_DHT_READINTO in both ports'
    mpconfigport.h), simulated in frozen/_dht.py, loaded only when a DHT is read."""
    import _dht

    _dht.readinto(pin, buf)


def unique_id():
    uid = _read("unique_id")
    uid = unhexlify(uid) if uid else b"\x5e\x1b\x0a\x4d\x00\x01"
    if _port.ESP8266:
        # ports/esp8266/modmachine.c: system_get_chip_id() as 4 little-endian bytes; the SDK's
        # chip id is the MAC's last three bytes.
        if len(uid) == 6:
            uid = bytes((uid[5], uid[4], uid[3], 0))
        return uid[:4]
    return uid[:6]  # ports/esp32/modmachine.c: esp_efuse_mac_get_default(), 6 bytes


def reset_cause():
    cause = _read("reset_cause")
    return _CAUSES.get(int(cause), 0) if cause else PWRON_RESET


class WDT:
    """The watchdog: the simulator (nodekit/sim/simnode.py), like the chip's hardware
    timer, resets the board when the wdt file is not refreshed in time.
    Neither port can stop it: there is no deinit()."""

    def __init__(self, id=0, timeout=5000):
        if _port.ESP8266:
            # ports/esp8266/machine_wdt.c: the SDK's timeout is fixed: anything but
            # timeout=5000 raises ValueError, then anything but id 0 does.
            if timeout != 5000 or id != 0:
                raise ValueError()
        else:
            # ports/esp32/machine_wdt.c: id 0 only; a timeout > 0 reconfigures the task watchdog.
            if id != 0:
                raise ValueError()
            if timeout <= 0:
                raise ValueError("WDT timeout too short")
        self._timeout = timeout
        self._last = None
        self.feed()

    def feed(self):
        now = time.ticks_ms()
        # Refreshing the file a few times per timeout is enough, and cheap.
        if self._last is None or time.ticks_diff(now, self._last) >= min(1000, self._timeout // 4):
            self._last = now
            _write("wdt", str(self._timeout))


def reset():
    print("         board reset")
    sys.exit(RESET_EXIT)


def soft_reset():
    reset()


# The CPU clock: an ESP8266 starts at 80 MHz (docs/esp8266/general.rst) and takes 80 or 160
# (esp8266/modmachine.c); an ESP32 at the IDF's default 160 MHz (ESP32_GENERIC keeps
# sdkconfig's default) and takes 20, 40, 80, 160, 240, the C3 not 240 (esp32/modmachine.c).
if _CHIP == "esp8266":
    _FREQS, _FREQ_ERROR = (80, 160), "frequency can only be either 80Mhz or 160MHz"
elif _CHIP == "esp32c3":
    _FREQS, _FREQ_ERROR = (20, 40, 80, 160), "frequency must be 20MHz, 40MHz, 80Mhz or 160MHz"
else:
    _FREQS, _FREQ_ERROR = (20, 40, 80, 160, 240), "frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz"
_freq = [80000000 if _CHIP == "esp8266" else 160000000]


def freq(hz=None):
    if hz is None:
        return _freq[0]
    if hz // 1000000 not in _FREQS:
        raise ValueError(_FREQ_ERROR)
    _freq[0] = hz // 1000000 * 1000000


def idle():
    time.sleep_ms(1)


class RTC:
    """machine.RTC: datetime() as ntptime.settime() calls it. The clock itself (the port's
    epoch, lost at power-on, kept or not across a reset as each port does) is _rtc.py's.
    RTC() takes no argument on either port (machine_rtc.c: mp_arg_check_num(..., 0, 0)); the
    ports' other methods (memory, alarm, irq; init on ESP32) are not simulated."""

    def datetime(self, dt=None):
        import _rtc

        return _rtc.datetime(dt)
