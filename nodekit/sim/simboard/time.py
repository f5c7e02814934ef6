# The board's `time` in the MicroPython VM: the VM's own (utime reaches the built-in from
# here), with the port's tick counter. On the ESP8266 and ESP32 ports, ticks_ms/us wrap at
# MICROPY_PY_TIME_TICKS_PERIOD = MP_SMALL_INT_POSITIVE_MASK + 1 = 2**30 (py/mpconfig.h, a
# 32-bit build's small int; extmod/modtime.c), about every 12.4 days; the 64-bit VM's
# wraps at 2**62, never in practice, which would hide every wrong ticks sum. Set
# $SIMBOARD_TICKS_START (ms) to power the board on just before the wrap.
# (nodekit/sim/compat/__init__.py does the same under CPython.)
from utime import *  # noqa: F401,F403
import os
import utime as _t

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1
_start = int(os.getenv("SIMBOARD_TICKS_START") or 0)
_t0_ms = _t.ticks_ms()
_t0_us = _t.ticks_us()


def ticks_ms():
    return (_t.ticks_ms() - _t0_ms + _start) & _MASK


def ticks_us():
    return (_t.ticks_us() - _t0_us + _start * 1000) & _MASK


def ticks_add(ticks, delta):
    # extmod/modtime.c time_ticks_add(): a delta ticks_diff() could not give back is refused.
    if not -_HALF < delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & _MASK


def ticks_diff(end, start):
    return ((end - start + _HALF) & _MASK) - _HALF

# The clock (time, time_ns, gmtime, localtime): the board's RTC in the port's epoch, 2000
# (_rtc.py), here too so that a VM started without start.py (make vboard) reads the same clock.
from _rtc import gmtime, localtime, mktime, time, time_ns  # noqa: E402,F401
