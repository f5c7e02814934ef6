# The chip's watchdog: armed once by the main loop, fed when the loop comes round and
# wherever the node knows it is making progress (a packet read, a PUBACK, a finished TLS
# handshake), so a long but healthy step never resets the board while a hang always does.
# On an ESP8266 its timeout is fixed at 5 s (ports/esp8266/machine_wdt.c: 5000 ms or
# ValueError): every single wait the node makes is bounded well inside that.
_wdt = None


def arm(timeout_ms):
    global _wdt
    import machine

    try:
        _wdt = machine.WDT(timeout=timeout_ms)
    except ValueError:  # the port's own message is empty (ports/esp8266/machine_wdt.c)
        raise ValueError("config: watchdog_s: this board's watchdog refuses %d s" % (timeout_ms // 1000))


def feed():
    if _wdt is not None:
        _wdt.feed()
