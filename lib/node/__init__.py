# The node: a MicroPython sensor/actuator that reports to Mosquitto.
# Each module has one job; app.py ties them together.
import time

__version__ = "0.1.0"


def unload(name):
    """Forget node.<name> once its work is done (config and tls run only at start), so
    its code and strings go back to the heap: an ESP8266 has about 30 KB of it."""
    import sys

    sys.modules.pop("node." + name, None)
    try:
        delattr(sys.modules[__name__], name)
    except AttributeError:
        pass


def log(tag, fmt, *args):
    """One line per event: seconds since boot, a short tag, the message, formatted only when
    printed. (Here, with the watchdog below, rather than in modules of their own: on an
    ESP8266 each module costs heap.) ticks_ms() counts from boot on a board; it wraps to 0
    after 2**30 ms (12.4 days), where a difference from a start time would turn negative."""
    ms = time.ticks_ms()
    print("%6d.%03d %-5s %s" % (ms // 1000, ms % 1000, tag, fmt % args if args else fmt))


# The chip's watchdog: armed once at start (node/start.py), fed when the loop comes round and
# wherever the node knows it is making progress (a packet read, a PUBACK, a finished TLS
# handshake), so a long but healthy step never resets the board while a hang always does.
# On an ESP8266 its timeout is fixed at 5 s (ports/esp8266/machine_wdt.c: 5000 ms or
# ValueError): every single wait the node makes is bounded well inside that.
_wdt = None


def arm_watchdog(timeout_ms):
    global _wdt
    import machine

    try:
        _wdt = machine.WDT(timeout=timeout_ms)
    except ValueError:  # the port's own message is empty (ports/esp8266/machine_wdt.c)
        raise ValueError("config: watchdog_s: this board's watchdog refuses %d s" % (timeout_ms // 1000))


def feed():
    if _wdt is not None:
        _wdt.feed()
