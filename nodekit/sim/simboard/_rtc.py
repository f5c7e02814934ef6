# The simulated board's real-time clock: what machine.RTC and the board's time.time(),
# time_ns(), gmtime(), localtime() and mktime() read, in the port's epoch.
#
# The ports (MicroPython v1.28.0):
# - epoch 2000-01-01: py/mpconfig.h defaults MICROPY_EPOCH_IS_2000, which neither
#   ports/esp8266 nor ports/esp32 mpconfigport.h overrides (the unix VM's is 1970);
#   gmtime and localtime are one function, UTC, an 8-tuple (extmod/modtime.c).
# - power-on: the clock reads 2000-01-01 00:00:00 and counts from there. ESP8266: the RTC
#   memory's magic is gone, delta = 0 (ports/esp8266/machine_rtc.c mp_hal_rtc_init); ESP32:
#   gettimeofday() starts at 0, which the port reads as seconds since 2000 (ports/esp32/
#   modtime.c; main.c adds TIMEUTILS_SECONDS_1970_TO_2000 for mbedTLS's date checks).
# - other resets: ESP32 keeps counting (the RTC timer runs on). ESP8266 keeps its delta in
#   RTC memory but its RTC tick counter restarts at 0 ("system_get_rtc_time() is always 0
#   after reset", machine_rtc.c): after a reset it is behind by the previous boot's uptime.
#
# State: $SIMBOARD_DIR/rtc, "<family> <delta_us>", kept across resets. ESP8266: the clock is
# delta + uptime; ESP32: delta + the PC's clock. At power-on (reset_cause 1, as nodekit/sim/simnode.py
# writes it) $SIMBOARD_RTC chooses: "unset" starts at 2000-01-01 as the ports do; anything
# else (the default) starts at the PC's clock, as if NTP had set it before: kinder than the
# port, so that tests not about the clock never wait on NTP.
import os
import sys

import _port
import utime as _host  # the PC's clock (CPython: nodekit.compat puts time there; VM: the built-in)

_DIR = os.getenv("SIMBOARD_DIR") or "."
_FILE = _DIR + "/rtc"
_TO_2000 = 946684800  # TIMEUTILS_SECONDS_1970_TO_2000 (shared/timeutils/timeutils.h)
_ESP8266 = _port.ESP8266


def _pc_us():
    return _host.time_ns() // 1000


_boot_us = _pc_us()  # imported at boot (by _port.install): the board's uptime counts from here


def _base_us():
    # What the stored delta is added to: ESP8266 its uptime, ESP32 the RTC timer (the PC's clock).
    return _pc_us() - _boot_us if _ESP8266 else _pc_us()


def _save(delta):
    global _delta
    _delta = delta
    with open(_FILE + ".new", "w") as f:
        f.write("%s %d\n" % (_port.FAMILY, delta))
    os.rename(_FILE + ".new", _FILE)  # a board killed mid-write never reads half a file


def _load():
    try:
        with open(_DIR + "/reset_cause") as f:
            cause = f.read().strip()
    except OSError:
        cause = ""
    if cause not in ("", "1"):  # not a power-on (machine.PWRON_RESET): the RTC kept its time
        try:
            with open(_FILE) as f:
                family, delta = f.read().split()
            if family == _port.FAMILY:
                return int(delta)
        except (OSError, ValueError):
            pass
    if os.getenv("SIMBOARD_RTC") == "unset":
        start = 0
    else:
        start = _pc_us() - _TO_2000 * 1000000
    delta = start - _base_us()
    _save(delta)
    return delta


_delta = _load()


def now_us():
    """The board's clock: microseconds since 2000-01-01 00:00:00 UTC."""
    return _delta + _base_us()


def set_us(us):
    _save(us - _base_us())


def _days(y, m, d):
    # Days from 2000-01-01 to y-m-d (proleptic Gregorian).
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 730425


def _seconds(y, mo, d, h, mi, s):
    return ((_days(y, mo, d) * 24 + h) * 60 + mi) * 60 + s


# --- the board's time module --------------------------------------------------------
def time():
    return now_us() // 1000000


def time_ns():
    # ports/esp8266/esp_mphal.c and ports/esp32/mphalport.c: the RTC in ns, same epoch.
    return now_us() * 1000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    t = _host.gmtime(int(secs) + _TO_2000)
    return tuple(t[:8])


localtime = gmtime  # extmod/modtime.c: both are time_localtime (no time zones on the ports)


def mktime(t):
    if not 8 <= len(t) <= 9:
        raise TypeError("mktime needs a tuple of length 8 or 9")
    y, mo = t[0], t[1] - 1
    y += mo // 12  # timeutils_mktime normalises the month...
    return _seconds(y, mo % 12 + 1, 1, t[3], t[4], t[5]) + (t[2] - 1) * 86400  # ...and the rest linearly


# --- machine.RTC().datetime() ----------------------------------------------------------
def datetime(dt=None):
    """(year, month, day, weekday, hours, minutes, seconds, subseconds): subseconds are
    milliseconds on ESP8266, microseconds on ESP32 (machine_rtc.c of each port)."""
    if dt is None:
        us = now_us()
        y, mo, d, h, mi, s, wd = gmtime(us // 1000000)[:7]
        return (y, mo, d, wd, h, mi, s, us % 1000000 // 1000 if _ESP8266 else us % 1000000)
    if len(dt) != 8:  # mp_obj_get_array_fixed_n(args[1], 8, ...)
        raise ValueError("requested length 8 but object has length %d" % len(dt))
    secs = _seconds(dt[0], dt[1], dt[2], dt[4], dt[5], dt[6])  # the weekday is ignored
    set_us(secs * 1000000 + (dt[7] * 1000 if _ESP8266 else dt[7]))


# --- putting the board's time where the board code imports it ---------------------------
_NAMES = ("time", "time_ns", "gmtime", "localtime", "mktime")
# What the ports' time has beyond the clock (extmod/modtime.c): the stand-in offers nothing more.
_PORT_NAMES = ("sleep", "sleep_ms", "sleep_us", "ticks_ms", "ticks_us", "ticks_cpu", "ticks_add", "ticks_diff")


def install():
    """Make the board's `import time` give the clock above. In the VM, `time` is
    nodekit/sim/simboard/time.py (the VM's own plus the port's ticks): its clock functions are
    replaced. Under CPython the standard library needs the PC's `time` (datetime, ssl,
    tempfile...), so only imports made by board code (boot.py, main.py, lib/, the board's
    root, NODE_PATH, the frozen modules) get a board `time`; everything else gets CPython's."""
    g = globals()
    if sys.implementation.name != "cpython":
        import time as board

        for n in _NAMES:
            setattr(board, n, g[n])
        # `import utime` on a board is the built-in time (py/objmodule.c: the u-prefix forces
        # the built-in), so the same clock and ticks here.
        sys.modules["utime"] = board
        return
    import builtins
    import types

    real = _host
    board = types.ModuleType("time")
    for n in _NAMES:
        setattr(board, n, g[n])

    def port_name(name):
        if name in _PORT_NAMES and hasattr(real, name):
            return getattr(real, name)  # looked up at each use: nodekit.compat may change them
        raise AttributeError("module 'time' has no attribute '%s'" % name)

    board.__getattr__ = port_name
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.getenv("NODE_REPO") or os.path.dirname(os.path.dirname(here))
    roots = [os.path.join(here, "frozen")] + [p for p in (os.getenv("SIMBOARD_FROZEN") or "").split(":") if p]
    roots += [p for p in (os.getenv("NODE_PATH") or "").split(":") if p]
    roots.append(os.getenv("NODE_LIB") or os.path.join(repo, "lib"))
    roots = tuple(os.path.abspath(p) + "/" for p in roots)
    not_board = (here + "/", os.path.dirname(here) + "/", sys.prefix + "/", sys.base_prefix + "/")
    cwd = os.getcwd() + "/"
    real_import = builtins.__import__

    def is_board(g):
        f = g.get("__file__") if g else None
        if f is None:
            return bool(g) and g.get("__name__") == "__main__"  # boot.py, main.py (start.py's exec)
        f = os.path.abspath(f)
        if f.startswith(roots):
            return True
        return f.startswith(cwd) and not f.startswith(not_board)

    def board_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name in ("time", "utime") and level == 0 and is_board(globals):  # utime: as above
            mod = sys.modules.get("time")
            return board if mod is real else mod  # a board-side stand-in put there (tests) wins
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = board_import
