# The simulated board's `network`: the port's WLAN, whose station joins the access
# point described in $SIMBOARD_DIR/ap.json ({"ssid", "password", "up"}), so a test can
# take the network away or change its password while a node runs. Rules, values and
# errors are the port's (_port.CHIP), copied from MicroPython v1.28.0 and cited:
#
# ESP8266 (ports/esp8266/network_wlan.c over the SDK): the interfaces' modes are the SDK's
#   opmode, which wifi_set_opmode() stores in flash: kept in $SIMBOARD_DIR/wifi_opmode
#   (1 station, 2 access point, 3 both), so a reset remembers it. Out of the factory it is 2:
#   the board's own access point is up (inisetup.py names it MicroPython-xxxxxx, key
#   "micropythoN") until WLAN(AP_IF).active(False).
# ESP32 (ports/esp32/network_wlan.c over ESP-IDF): nothing is stored (WIFI_STORAGE_RAM), the
#   access point starts off; after connect() the driver rejoins by itself whenever the link
#   drops, and connect() while it is still trying raises OSError("Wifi Internal Error")
#   (ESP_ERR_WIFI_CONN, "sta is connecting, return error": micropython#17661).
#
# A test can make a call fail as the port's does when the radio misbehaves: the file
# $SIMBOARD_DIR/wifi_error names the calls (active, connect, disconnect) that raise, while it
# is there, the OSError the port raises for them (status() and isconnected() never raise
# on either port: they read state).
import json
import os
import time

import _port

_DIR = os.getenv("SIMBOARD_DIR") or "."
_JOIN_MS = 200  # a real association takes a moment; don't pretend it is instant
_ESP8266 = _port.ESP8266

STA_IF = 0  # esp8266: STATION_IF; esp32: WIFI_IF_STA
AP_IF = 1   # esp8266: SOFTAP_IF; esp32: WIFI_IF_AP

if _ESP8266:
    # ports/esp8266/modnetwork_globals.h: the SDK's station_status_t.
    STAT_IDLE = 0
    STAT_CONNECTING = 1
    STAT_WRONG_PASSWORD = 2
    STAT_NO_AP_FOUND = 3
    STAT_CONNECT_FAIL = 4
    STAT_GOT_IP = 5
else:
    # ports/esp32/modnetwork.h (STAT_IDLE, _CONNECTING, _GOT_IP) and modnetwork_globals.h,
    # where the others are ESP-IDF's wifi_err_reason_t codes passed through.
    STAT_IDLE = 1000
    STAT_CONNECTING = 1001
    STAT_GOT_IP = 1010
    STAT_BEACON_TIMEOUT = 200
    STAT_NO_AP_FOUND = 201
    STAT_WRONG_PASSWORD = 202  # WIFI_REASON_AUTH_FAIL
    STAT_ASSOC_FAIL = 203
    STAT_CONNECT_FAIL = 203    # WIFI_REASON_ASSOC_FAIL
    STAT_HANDSHAKE_TIMEOUT = 204
    STAT_NO_AP_FOUND_W_COMPATIBLE_SECURITY = 210
    STAT_NO_AP_FOUND_IN_AUTHMODE_THRESHOLD = 211
    STAT_NO_AP_FOUND_IN_RSSI_THRESHOLD = 212
    _ASSOC_LEAVE = 8           # WIFI_REASON_ASSOC_LEAVE: after disconnect()
    _CONNECTION_FAIL = 205     # WIFI_REASON_CONNECTION_FAIL: what a wrong password gives (#11625)


def _ap():
    try:
        with open(_DIR + "/ap.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# The OSError each call raises when its SDK/IDF call fails: esp8266/network_wlan.c
# error_check() texts; esp32/network_common.c esp_exceptions() texts (connect: ESP_ERR_WIFI_CONN,
# micropython#17661; active: esp_wifi_start()'s ESP_ERR_NO_MEM; disconnect: ESP_ERR_WIFI_NOT_STARTED).
_FAULTS = ({"active": "Cannot update i/f status", "connect": "Cannot connect to AP",
            "disconnect": "Cannot disconnect from AP"} if _ESP8266 else
           {"active": "WiFi Out of Memory", "connect": "Wifi Internal Error", "disconnect": "Wifi Not Started"})


def _fault(call):
    try:
        with open(_DIR + "/wifi_error") as f:
            failing = f.read().split()
    except OSError:
        return
    if call in failing:
        raise OSError(_FAULTS[call])


def _read_opmode():
    try:
        with open(_DIR + "/wifi_opmode") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2  # the SDK's factory default: SOFTAP_MODE


class _Radio:
    """The chip's Wi-Fi, shared by both interfaces (both ports hand out one object per
    interface: WLAN(STA_IF) twice is the same station)."""

    def __init__(self):
        self.mode = _read_opmode() if _ESP8266 else 0  # bit 1: station, bit 2: access point
        self.started = False        # esp32: esp_wifi_start() called
        self.ssid = None            # the station's configured network
        self.key = ""
        self.requested = False      # connect() asked for and not cancelled (the driver retries)
        self.connected = False
        self.reason = 0             # esp32: the last disconnect reason (0: none)
        self.esp8266_status = 0
        self.attempt_end = 0        # when the association under way resolves

    def set_mode(self, mode):
        self.mode = mode
        if _ESP8266:
            # wifi_set_opmode() writes the mode to flash: it survives a reset.
            with open(_DIR + "/wifi_opmode", "w") as f:
                f.write(str(mode))
        if not mode & 1:
            self.requested = self.connected = False

    def start_attempt(self):
        self.attempt_end = time.ticks_add(time.ticks_ms(), _JOIN_MS)

    def advance(self):
        """Move the station on to where the radio would be by now."""
        if not self.mode & 1 or not self.requested:
            return
        ap = _ap()
        visible = ap and ap.get("up", True) and ap.get("ssid") == self.ssid
        if self.connected:
            if visible and ap.get("password", "") == self.key:
                return
            # The AP left (or changed its key): the link drops, and the driver tries again.
            self.connected = False
            self.reason = 200  # WIFI_REASON_BEACON_TIMEOUT
            self.esp8266_status = STAT_CONNECTING
            self.start_attempt()
            return
        if time.ticks_diff(time.ticks_ms(), self.attempt_end) < 0:
            return
        if visible and ap.get("password", "") == self.key:
            self.connected = True
            self.reason = 0
            self.esp8266_status = STAT_GOT_IP
            return
        if _ESP8266:
            self.esp8266_status = STAT_WRONG_PASSWORD if visible else STAT_NO_AP_FOUND
        else:
            self.reason = _CONNECTION_FAIL if visible else STAT_NO_AP_FOUND
        # Both keep retrying: ESP-IDF because network_wlan.c calls esp_wifi_connect() again on
        # each STA_DISCONNECTED (conf_wifi_sta_reconnects 0: forever); the SDK by its default
        # reconnect policy.
        self.start_attempt()


_radio = _Radio()


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    _objs = {}

    def __new__(cls, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            if _ESP8266:
                # esp_wlan_make_new() checks idx against sizeof(wlan_objs), a byte count (16),
                # so 2..15 reach past its table of two: refused here, ValueError() beyond it.
                raise ValueError()
            raise ValueError("invalid WLAN interface identifier")  # network_wlan_make_new()
        obj = WLAN._objs.get(interface_id)
        if obj is None:
            obj = object.__new__(cls)
            obj._if = interface_id
            WLAN._objs[interface_id] = obj
        return obj

    def __init__(self, interface_id=STA_IF):
        pass

    def _require_sta(self):
        if self._if != STA_IF:
            raise OSError("STA required")  # require_if()

    def active(self, is_active=None):
        r = _radio
        bit = 1 if self._if == STA_IF else 2
        if is_active is None:
            if not _ESP8266 and not r.started:
                return False
            return bool(r.mode & bit)
        _fault("active")
        mode = (r.mode | bit) if is_active else (r.mode & ~bit)
        if not _ESP8266:
            # network_wlan_active(): esp_wifi_set_mode() + esp_wifi_start(), or esp_wifi_stop().
            r.started = mode != 0
            if not mode & 1:
                r.reason = 0
        r.set_mode(mode)
        if not _ESP8266:
            return bool(mode & bit)
        return None

    def connect(self, ssid=None, key=None, bssid=None):
        r = _radio
        _fault("connect")
        if _ESP8266:
            self._require_sta()
            # The SDK's wifi_station_connect() fails outside station mode:
            # error_check(..., "Cannot connect to AP") in esp_connect().
            if not r.mode & 1:
                raise OSError("Cannot connect to AP")
        else:
            # esp_wifi_connect() through esp_exceptions() (ports/esp32/network_common.c).
            if not r.started:
                raise OSError("Wifi Not Started")
            if not r.mode & 1:
                raise OSError("Wifi Invalid Mode")
            if r.requested and not r.connected:
                raise OSError("Wifi Internal Error")
        if ssid is not None:
            r.ssid = ssid
        if key is not None:
            r.key = key
        r.requested = True
        r.connected = False
        r.esp8266_status = STAT_CONNECTING
        r.start_attempt()

    def disconnect(self):
        r = _radio
        _fault("disconnect")
        if _ESP8266:
            self._require_sta()
            if not r.mode & 1:
                raise OSError("Cannot disconnect from AP")
        elif not r.started:
            raise OSError("Wifi Not Started")  # esp_wifi_disconnect()
        else:
            r.reason = _ASSOC_LEAVE
        r.requested = r.connected = False
        r.esp8266_status = STAT_IDLE

    def status(self, param=None):
        r = _radio
        if param is not None:
            if param == "rssi" and not _ESP8266:
                # esp32/network_wlan.c: require_if(STA), then esp_wifi_sta_get_ap_info(), which
                # fails unless connected (network_common.c: ESP_ERR_WIFI_NOT_CONNECT).
                self._require_sta()
                if not self.isconnected():
                    raise OSError("Wifi Not Connected")
                return -60
            if param == "rssi" and self._if == STA_IF:
                # esp8266/network_wlan.c: wifi_station_get_rssi(), which answers 31, its
                # "invalid", unless connected (ESP8266 Non-OS SDK API reference).
                return -60 if self.isconnected() else 31
            if param == "stations" and self._if == AP_IF:
                return []
            if param == "stations" and not _ESP8266:
                raise OSError("AP required")
            raise ValueError("unknown status param")
        if self._if != STA_IF:
            return -1 if _ESP8266 else None
        r.advance()
        if _ESP8266:
            return r.esp8266_status if r.mode & 1 else STAT_IDLE
        # network_wlan_status(), in its order.
        reason = r.reason
        if r.connected:
            return STAT_GOT_IP
        if reason in (STAT_NO_AP_FOUND, STAT_NO_AP_FOUND_IN_RSSI_THRESHOLD,
                      STAT_NO_AP_FOUND_IN_AUTHMODE_THRESHOLD, STAT_NO_AP_FOUND_W_COMPATIBLE_SECURITY):
            return reason
        if reason in (STAT_WRONG_PASSWORD, _CONNECTION_FAIL):
            return STAT_WRONG_PASSWORD
        if reason == _ASSOC_LEAVE:
            return STAT_IDLE
        if r.requested:
            return STAT_CONNECTING
        return STAT_IDLE if reason == 0 else reason

    def isconnected(self):
        if self._if != STA_IF:
            return False  # no station has joined the board's access point
        _radio.advance()
        return _radio.connected and bool(_radio.mode & 1)

    def ifconfig(self, cfg=None):
        if self._if == STA_IF and self.isconnected():
            return ("10.42.0.17", "255.255.255.0", "10.42.0.1", "10.42.0.1")
        if self._if == AP_IF and self.active():
            return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def scan(self):
        if _ESP8266:
            self._require_sta()  # esp8266/network_wlan.c esp_scan(); esp32's checks the mode only
        if not _radio.mode & 1 or not (_ESP8266 or _radio.started):
            raise OSError("STA must be active")
        ap = _ap()
        if not ap or not ap.get("up", True):
            return []
        return [(ap["ssid"].encode(), b"\x02\x00\x00\x00\x00\x01", 6, -60, 3, False)]
