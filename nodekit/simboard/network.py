# The simulated board's `network`: a station interface that joins the access
# point described in $SIMBOARD_DIR/ap.json ({"ssid", "password", "up"}), so a
# test can take the network away or change its password while a node runs.
import json
import os
import time

_DIR = os.getenv("SIMBOARD_DIR") or "."
_JOIN_MS = 200  # a real association takes a moment; don't pretend it is instant

STA_IF = 0
AP_IF = 1
# The ESP8266 port's values.
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_WRONG_PASSWORD = 2
STAT_NO_AP_FOUND = 3
STAT_CONNECT_FAIL = 4
STAT_GOT_IP = 5


def _ap():
    try:
        with open(_DIR + "/ap.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self._if = interface_id
        self._active = False
        self._ssid = None
        self._key = None
        self._since = 0

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._ssid = None

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("WLAN not active")
        self._ssid = ssid
        self._key = key or ""
        self._since = time.ticks_ms()

    def disconnect(self):
        self._ssid = None

    def status(self, param=None):
        if param == "rssi":
            return -60
        if self._ssid is None or not self._active:
            return STAT_IDLE
        if time.ticks_diff(time.ticks_ms(), self._since) < _JOIN_MS:
            return STAT_CONNECTING
        ap = _ap()
        if not ap or not ap.get("up", True) or ap.get("ssid") != self._ssid:
            return STAT_NO_AP_FOUND
        if ap.get("password", "") != self._key:
            return STAT_WRONG_PASSWORD
        return STAT_GOT_IP

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def ifconfig(self, cfg=None):
        if self.isconnected():
            return ("10.42.0.17", "255.255.255.0", "10.42.0.1", "10.42.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def scan(self):
        ap = _ap()
        if not ap or not ap.get("up", True):
            return []
        return [(ap["ssid"].encode(), b"\x02\x00\x00\x00\x00\x01", 6, -60, 3, False)]
