# Health counters, published now and then as JSON on maison/<room>/stats so a
# person at the Pi can see how each node is doing.
import gc
import sys
import time

import machine

from node import __version__

# Named by the port's own constants, whose values differ: ESP8266 0 1 4 5 6 (the SDK's
# reasons), ESP32 1..5 (ports/*/modmachine.c). machine.reset() is SOFT_RESET on an
# ESP8266, HARD_RESET on an ESP32 (esp_restart).
_CAUSES = ("PWRON_RESET", "HARD_RESET", "WDT_RESET", "DEEPSLEEP_RESET", "SOFT_RESET")


class Stats:
    def __init__(self):
        self.sent = self.commands = self.ignored = self.sensor_errors = 0
        self.reconnects = self.id_conflicts = self.memory_errors = 0
        cause = machine.reset_cause()
        self.reset_cause = "unknown"
        for name in _CAUSES:
            if getattr(machine, name, None) == cause:
                self.reset_cause = name[:-6].lower()
        if sys.platform == "esp8266" and cause in (2, 3):
            # SDK reasons machine leaves unnamed: 2 a crash (exception), 3 the software
            # watchdog, which is the one machine.WDT feeds there.
            self.reset_cause = "wdt" if cause == 3 else "exception"
        self.uptime_s = 0  # summed, since ticks wrap after 12 days
        self._last = time.ticks_ms()

    def as_json(self, backlog, wifi_losses):
        elapsed = time.ticks_diff(time.ticks_ms(), self._last) // 1000
        self.uptime_s += elapsed
        self._last = time.ticks_add(self._last, elapsed * 1000)
        gc.collect()  # so free_heap says what is really in use, comparable over time
        free = gc.mem_free() if hasattr(gc, "mem_free") else None  # MicroPython only
        return ('{"version": "%s", "uptime_s": %d, "sent": %d, "waiting": %d, "dropped": %d, '
                '"reconnects": %d, "wifi_losses": %d, "commands": %d, "ignored": %d, '
                '"sensor_errors": %d, "id_conflicts": %d, "memory_errors": %d, "free_heap": %s, '
                '"reset_cause": "%s"}' % (
                    __version__, self.uptime_s, self.sent, backlog.count, backlog.dropped,
                    self.reconnects, wifi_losses, self.commands, self.ignored, self.sensor_errors,
                    self.id_conflicts, self.memory_errors, "null" if free is None else "%d" % free,
                    self.reset_cause))
