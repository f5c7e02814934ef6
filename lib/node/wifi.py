# Keep the station interface up without ever blocking the node: up() is called
# from the main loop, says plainly why the link is down, and rejoins by itself.
# No Wi-Fi call can end the loop: an OSError from any of them is logged once and
# the call tried again later.
import network
import sys
import time

from micropython import const

from node import log, unload

_JOIN_TIMEOUT_MS = const(20000)
# ESP32: once connect() was called the driver rejoins by itself after a drop
# (ports/esp32/network_wlan.c, STA_DISCONNECTED), and connect() while it tries raises
# OSError("Wifi Internal Error") (micropython#17661): the node watches it instead.
_DRIVER_REJOINS = sys.platform == "esp32"


_last = [None, None]  # the last failure status and its text: one that stays loads nothing more


def _reason(status):
    """What a status means, or None (node/why.py, loaded for the occasion: the texts are
    needed only when a link fails)."""
    if status in (network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_GOT_IP):
        return None  # no failure to tell: nothing to load
    if status != _last[0]:
        try:
            from node import why
        except MemoryError:
            return "status %d" % status
        try:
            _last[0], _last[1] = status, why.wifi(status)
        finally:
            unload("why")
    return _last[1]


class Wifi:
    def __init__(self, cfg, retry, host=None):
        self.ssid = cfg["ssid"]
        self._password = cfg["password"]
        self._keep_ap = cfg.get("ap", False)
        self._retry = retry  # the node's reconnect policy (app.Retry): delay() before a rejoin, done() once joined
        self.wlan = None
        self._ready = False
        self._joining = False
        self._was_up = False
        self._hold = False  # a Wi-Fi call failed: quiet until _retry_at
        self._said = None   # ESP32: the reason last logged while the driver rejoins
        self._since = 0
        self._retry_at = time.ticks_ms()
        self.losses = 0
        if host and sys.platform == "esp8266" and host.lower().endswith(".local"):
            # lwIP on the ESP8266 asks DNS only: getaddrinfo fails with OSError(-2).
            log("mqtt", "broker host '%s' cannot resolve on an ESP8266 (no mDNS): put the Pi's "
                "address in mqtt.host, e.g. 192.168.1.10", host)

    def _setup(self):
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        if not self._keep_ap:
            # An ESP8266 leaves the factory with its own access point up (MicroPython-xxxxxx,
            # a published key), and remembers it in flash: off, unless "wifi": {"ap": true}.
            ap = network.WLAN(network.AP_IF)
            if ap.active():
                ap.active(False)
                log("wifi", "the board's own access point switched off")
        self._ready = True

    def up(self):
        """True when the link is up; otherwise advance the (re)join, never waiting."""
        now = time.ticks_ms()
        if self._hold and time.ticks_diff(now, self._retry_at) < 0:
            return False
        try:
            if not self._ready:
                self._setup()
            self._hold = False
            return self._up(now)
        except OSError as e:
            self._hold = True
            self._joining = False
            if self._was_up:
                self._was_up = False
                self.losses += 1
            delay = self._retry.delay()
            self._retry_at = time.ticks_add(now, delay)
            log("wifi", "Wi-Fi error: %s; trying again in %d.%d s", e, delay // 1000, delay % 1000 // 100)
            if self.wlan and self._ready:
                try:
                    self.wlan.disconnect()  # stops a join the driver may still be making
                except OSError:
                    pass
            return False

    def _up(self, now):
        w = self.wlan
        if w.isconnected():
            if not self._was_up:
                log("wifi", "connected to '%s', address %s", self.ssid, w.ifconfig()[0])
                self._was_up = True
                self._joining = False
                self._retry.done()
                self._said = None
            return True
        if self._was_up:
            self._was_up = False
            self.losses += 1
            why = _reason(w.status()) or "signal lost"
            if _DRIVER_REJOINS:
                log("wifi", "link to '%s' lost (%s); the Wi-Fi driver is rejoining", self.ssid, why)
                self._joining = True
                self._since = now
                return False
            log("wifi", "link to '%s' lost (%s); rejoining", self.ssid, why)
            self._retry_at = now
        if self._joining:
            status = w.status()
            reason = _reason(status)
            if _DRIVER_REJOINS and status != network.STAT_IDLE:
                if reason is not None and reason != self._said:
                    self._said = reason
                    log("wifi", "%s ('%s'); the Wi-Fi driver keeps trying", reason, self.ssid)
                return False
            if reason is None and time.ticks_diff(now, self._since) < _JOIN_TIMEOUT_MS:
                return False
            w.disconnect()
            self._joining = False
            delay = self._retry.delay()
            self._retry_at = time.ticks_add(now, delay)
            log("wifi", "%s ('%s'); retrying in %d.%d s", reason or "no connection after %d s" % (_JOIN_TIMEOUT_MS // 1000),
                self.ssid, delay // 1000, delay % 1000 // 100)
        elif time.ticks_diff(now, self._retry_at) >= 0:
            log("wifi", "joining '%s'", self.ssid)
            self._said = None
            w.connect(self.ssid, self._password)
            self._joining = True
            self._since = now
        return False
