"""What MicroPython has and CPython lacks, so the board files run unchanged on the PC.

This is the runtime, not the hardware (that is nodekit/sim/simboard): the `ticks_*`
clock, `micropython.const`, and the `usocket`/`ussl` stream sockets with
`read`/`write` that umqtt.simple calls. Installed by nodekit.sim.cpython_board.
"""
import binascii
import os
import struct
import sys
import time

# A 32-bit port's tick counters wrap at 2**30 (py/mpconfig.h MICROPY_PY_TIME_TICKS_PERIOD);
# so do ours, and $SIMBOARD_TICKS_START (ms) starts them just before the wrap, as
# nodekit/sim/simboard/time.py does in the MicroPython VM.
_TICKS_PERIOD = 1 << 30
_TICKS_HALF = _TICKS_PERIOD // 2
_START_MS = int(os.getenv("SIMBOARD_TICKS_START") or 0)
_T0 = time.monotonic()


def ticks_ms():
    return (int((time.monotonic() - _T0) * 1000) + _START_MS) & (_TICKS_PERIOD - 1)


def ticks_us():
    return (int((time.monotonic() - _T0) * 1000000) + _START_MS * 1000) & (_TICKS_PERIOD - 1)


def ticks_add(ticks, delta):
    # extmod/modtime.c time_ticks_add(): a delta ticks_diff() could not give back is refused.
    if not -_TICKS_HALF < delta < _TICKS_HALF:
        raise OverflowError("ticks interval overflow")
    return (ticks + delta) & (_TICKS_PERIOD - 1)


def ticks_diff(end, start):
    return ((end - start + _TICKS_HALF) & (_TICKS_PERIOD - 1)) - _TICKS_HALF


def sleep_ms(ms):
    time.sleep(max(0, ms) / 1000)


def install():
    for name, fn in (("ticks_ms", ticks_ms), ("ticks_us", ticks_us), ("ticks_add", ticks_add),
                     ("ticks_diff", ticks_diff), ("sleep_ms", sleep_ms),
                     ("sleep_us", lambda us: time.sleep(max(0, us) / 1e6))):
        setattr(time, name, fn)
    sys.modules.setdefault("ustruct", struct)
    sys.modules.setdefault("ubinascii", binascii)
    sys.modules.setdefault("utime", time)
