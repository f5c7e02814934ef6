# Keep the station interface up without ever blocking the node: up() is called
# from the main loop, says plainly why the link is down, and rejoins by itself.
import network
import time

from node.log import log

_JOIN_TIMEOUT_MS = 20000


def _reason(status):
    for name, text in (("STAT_WRONG_PASSWORD", "wrong Wi-Fi password"),
                       ("STAT_NO_AP_FOUND", "network not found"),
                       ("STAT_CONNECT_FAIL", "connection failed")):
        if status == getattr(network, name, None):
            return text
    return None


class Wifi:
    def __init__(self, cfg, backoff):
        self.ssid = cfg["ssid"]
        self._password = cfg["password"]
        self._backoff = backoff  # backoff(attempt) -> ms
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        self._joining = False
        self._was_up = False
        self._since = 0
        self._retry_at = time.ticks_ms()
        self._attempt = 0
        self.losses = 0

    def up(self):
        """True when the link is up; otherwise advance the (re)join, never waiting."""
        if self.wlan.isconnected():
            if not self._was_up:
                log("wifi", "connected to '%s', address %s", self.ssid, self.wlan.ifconfig()[0])
                self._was_up = True
                self._joining = False
                self._attempt = 0
            return True
        now = time.ticks_ms()
        if self._was_up:
            self._was_up = False
            self.losses += 1
            log("wifi", "link to '%s' lost (%s); rejoining", self.ssid,
                _reason(self.wlan.status()) or "signal lost")
            self._retry_at = now
        if self._joining:
            reason = _reason(self.wlan.status())
            if reason is None and time.ticks_diff(now, self._since) < _JOIN_TIMEOUT_MS:
                return False
            self.wlan.disconnect()
            self._joining = False
            delay = self._backoff(self._attempt)
            self._attempt += 1
            self._retry_at = time.ticks_add(now, delay)
            log("wifi", "%s ('%s'); retrying in %d s", reason or "no connection after %d s" % (_JOIN_TIMEOUT_MS // 1000),
                self.ssid, delay // 1000)
        elif time.ticks_diff(now, self._retry_at) >= 0:
            log("wifi", "joining '%s'", self.ssid)
            self.wlan.connect(self.ssid, self._password)
            self._joining = True
            self._since = now
        return False
