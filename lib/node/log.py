# One line per event: seconds since boot, a short tag, the message.
# The message is formatted only when printed, so quiet calls cost nothing.
import time

_T0 = time.ticks_ms()
debug = False


def log(tag, fmt, *args):
    ms = time.ticks_diff(time.ticks_ms(), _T0)
    print("%6d.%03d %-5s %s" % (ms // 1000, ms % 1000, tag, fmt % args if args else fmt))


def dbg(tag, fmt, *args):
    if debug:
        log(tag, fmt, *args)
