# The board's clock, set by NTP (the Pi by default: ntp.host is the broker's host).
# After a power cut an ESP8266 or ESP32 wakes at 2000-01-01 (neither port keeps time
# without power), and ESP32's mbedTLS then finds the broker's certificate not yet valid.
# The loop calls sync() until it succeeds, with backoff: a node that boots before the Pi
# gets its clock as soon as the Pi answers.
import sys
import time

from micropython import const

from node import log

_YEAR_OK = const(2024)  # a board that never got the time believes it is 2000
_TIMEOUT_S = const(1)  # one NTP query at most: the loop must come round within the ESP8266's 5 s watchdog
# ESP32 checks the broker's certificate dates against this clock; the ESP8266's axTLS checks nothing.
NEEDED = sys.platform != "esp8266"
_told = False


def is_set():
    return time.gmtime()[0] >= _YEAR_OK


def waiting():
    """True while a TLS connection cannot succeed for want of the date. Said once."""
    global _told
    if not NEEDED or is_set():
        return False
    if not _told:
        _told = True
        log("clock", "not set (it reads %d): the broker's certificate cannot be checked "
            "until NTP answers; MQTT waits for the clock", time.gmtime()[0])
    return True


def sync(host, retry_ms):
    """One NTP attempt; True when there is no more to do (set, or no NTP client)."""
    try:
        import ntptime
    except ImportError:
        log("clock", "no NTP client on this board; its clock reads %d", time.gmtime()[0])
        return True
    ntptime.host = host
    ntptime.timeout = _TIMEOUT_S
    try:
        ntptime.settime()
    except Exception as e:  # OSError (no answer, no name), ValueError (short reply): retried
        log("clock", "cannot set the clock from NTP server %s (%r); next try in %d.%d s",
            host, e, retry_ms // 1000, retry_ms % 1000 // 100)
        return False
    log("clock", "set from %s: %04d-%02d-%02d %02d:%02d:%02d UTC", host, *time.gmtime()[:6])
    return True
