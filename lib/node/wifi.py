# Bring up the station interface and say plainly why it does not come up.
import network
import time

from node.log import log

_TIMEOUT_MS = 20000


def _reason(status):
    for name, text in (("STAT_WRONG_PASSWORD", "wrong Wi-Fi password"),
                       ("STAT_NO_AP_FOUND", "network not found"),
                       ("STAT_CONNECT_FAIL", "connection failed")):
        if status == getattr(network, name, None):
            return text
    return None


def connect(cfg, timeout_ms=_TIMEOUT_MS):
    """Return the connected WLAN, or raise OSError with the reason."""
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return wlan
    log("wifi", "connecting to '%s'", cfg["ssid"])
    wlan.connect(cfg["ssid"], cfg["password"])
    start = time.ticks_ms()
    while not wlan.isconnected():
        reason = _reason(wlan.status())
        if reason:
            wlan.disconnect()
            raise OSError("wifi: %s ('%s')" % (reason, cfg["ssid"]))
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            wlan.disconnect()
            raise OSError("wifi: no connection to '%s' after %d s" % (cfg["ssid"], timeout_ms // 1000))
        time.sleep_ms(100)
    log("wifi", "connected, address %s", wlan.ifconfig()[0])
    return wlan
