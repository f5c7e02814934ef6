# Set the clock before TLS: the broker's certificate dates are checked against it.
import time

from node.log import log

_YEAR_OK = 2024  # a board that never got the time believes it is 2000


def is_set():
    return time.gmtime()[0] >= _YEAR_OK


def sync(host):
    try:
        import ntptime
    except ImportError:
        log("clock", "no NTP client on this board; its clock reads %d", time.gmtime()[0])
        return is_set()
    ntptime.host = host
    try:
        ntptime.settime()
        log("clock", "set from %s", host)
    except (OSError, OverflowError) as e:
        log("clock", "cannot set the clock from NTP server %s (%s)", host, e)
    return is_set()
