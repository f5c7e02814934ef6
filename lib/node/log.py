# One line per event: seconds since boot, a short tag, the message.
# The message is formatted only when printed, so quiet calls cost nothing.
import time


def log(tag, fmt, *args):
    # ticks_ms() counts from boot on a board; it wraps to 0 after 2**30 ms (12.4 days),
    # where a difference from a start time would turn negative after 6.2.
    ms = time.ticks_ms()
    print("%6d.%03d %-5s %s" % (ms // 1000, ms % 1000, tag, fmt % args if args else fmt))

