# The simulated board's `machine`: what the node's hardware calls reach on the PC.
# MicroPython-compatible, so it serves CPython and the MicroPython VM alike.
# Board state lives in files under $SIMBOARD_DIR, where tests and tools read and
# set it: pin<N> (an output's level, or an input's level to read), adc<N> (an
# input's raw value, or "error" / "hang" / "memory" to make the read fail, hang
# or raise MemoryError), unique_id,
# reset_cause (written by the simulator), wdt (the watchdog's last feed).
import os
import sys
import time
from binascii import unhexlify

_DIR = os.getenv("SIMBOARD_DIR") or "."
# make bench: each output pin change is appended here with a wall-clock time_ns, which
# the benchmark compares with tshark's timestamps (the same CLOCK_REALTIME).
_PIN_LOG = os.getenv("SIMBOARD_PIN_LOG")
RESET_EXIT = 75  # the exit status the simulator reads as "the board reset"

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def _read(name):
    try:
        with open(_DIR + "/" + name) as f:
            return f.read().strip()
    except OSError:
        return None


def _write(name, text):
    with open(_DIR + "/" + name, "w") as f:
        f.write(text)


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self._id = id
        self._mode = mode
        self._pull = pull
        self._v = None
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        self._mode = mode
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self._mode == Pin.OUT:
                return self._v or 0
            level = _read("pin%s" % self._id)
            if level:
                return int(level)
            return 1 if self._pull == Pin.PULL_UP else 0  # nothing wired: the pull wins
        v = 1 if v else 0
        if v != self._v:
            if _PIN_LOG:
                t = time.time_ns()  # first: the file writes below are the simulator's, not the pin's
                with open(_PIN_LOG, "a") as f:
                    f.write("%s %d %d\n" % (self._id, v, t))
            self._v = v
            _write("pin%s" % self._id, str(v))
            print("         board pin %s = %d" % (self._id, v))

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class ADC:
    def __init__(self, pin, atten=None):
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
        return self.read_u16() >> 6


def unique_id():
    uid = _read("unique_id")
    return unhexlify(uid) if uid else b"\x5e\x1b\x0a\x4d\x00\x01"


def reset_cause():
    cause = _read("reset_cause")
    return int(cause) if cause else PWRON_RESET


class WDT:
    """The watchdog: the simulator (nodekit/sim.py), like the chip's hardware
    timer, resets the board when the wdt file is not refreshed in time."""

    def __init__(self, id=0, timeout=5000):
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


def freq(hz=None):
    return 160000000


def idle():
    time.sleep_ms(1)
