# The node's start, run once after each reset and then dropped from RAM (app.main()
# unloads it): the reset cause, safe mode, the config, the LED's last state, the watchdog.
# What only the start needs never takes heap from the running node.
import sys
import time

import machine

from node import __version__, arm_watchdog, log, unload

_SAFE_WINDOW_MS = 1000  # after a reset, how long a press of BOOT/FLASH selects safe mode
# Named by the port's own constants, whose values differ: ESP8266 0 1 4 5 6 (the SDK's
# reasons), ESP32 1..5 (ports/*/modmachine.c). machine.reset() is SOFT_RESET on an
# ESP8266, HARD_RESET on an ESP32 (esp_restart).
_CAUSES = ("PWRON_RESET", "HARD_RESET", "WDT_RESET", "DEEPSLEEP_RESET", "SOFT_RESET")


def reset_cause():
    cause = machine.reset_cause()
    if sys.platform == "esp8266" and cause in (2, 3):
        # SDK reasons machine leaves unnamed: 2 a crash (exception), 3 the software
        # watchdog, which is the one machine.WDT feeds there.
        return "wdt" if cause == 3 else "exception"
    for name in _CAUSES:
        if getattr(machine, name, None) == cause:
            return name[:-6].lower()
    return "unknown"


def safe_mode():
    """Start without the node when the BOOT/FLASH button (GPIO0) is pressed in the first
    second after a reset, so nothing in config.json can lock a person out. Not *at* reset:
    GPIO0 low while the chip comes out of reset is a strapping pin that starts the ROM
    bootloader (ESP8266 and ESP32 datasheets), and MicroPython never runs. (main.py checks
    the SAFEMODE file, which `make deploy` uses.)"""
    if sys.platform not in ("esp8266", "esp32"):
        return None
    button = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)
    log("boot", "press BOOT/FLASH (GPIO0) now for safe mode (%d s)", _SAFE_WINDOW_MS // 1000)
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < _SAFE_WINDOW_MS:
        if button.value() == 0:
            return "the BOOT/FLASH button was pressed after reset"
        time.sleep_ms(20)
    return None


def _config(path):
    # Read and checked before the rest of the node is imported, then its checker dropped:
    # the config's many messages and the running node are never in RAM together.
    from node import config

    try:
        return config.load(path)
    finally:
        unload("config")


def restore_led(node, path):
    # The last commanded state (app.py writes it on every change), or off as at power-on.
    try:
        with open(path) as f:
            on = f.read() == "1"
    except OSError:
        return
    node.switch_led(on)
    log("led", "%s (restored after reset)", "on" if on else "off")


def node(path):
    """The node, built and its watchdog armed; None in safe mode or with a bad config
    (both said in one line, and the REPL stays free: never a traceback loop)."""
    cause = reset_cause()
    log("boot", "node %s on %s, reset cause: %s", __version__, sys.platform, cause)
    why = safe_mode()
    if why:
        log("boot", "safe mode: %s; node not started, REPL free", why)
        return None
    from node.app import Node

    try:
        cfg = _config(path)
        n = Node(cfg)
        arm_watchdog(cfg["watchdog_ms"])
    except ValueError as e:
        log("conf", "%s", e)
        log("conf", "node not started: fix config.json, then reset the board")
        return None
    n.stats.reset_cause = cause
    log("boot", "room '%s', reading every %d ms, LED on pin %d", cfg["room"], cfg["period_ms"], cfg["led"]["pin"])
    return n
