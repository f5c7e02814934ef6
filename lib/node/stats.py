# Health counters, published now and then as JSON on maison/<room>/stats so a
# person at the Pi can see how each node is doing.
import gc
import time

from node import __version__


class Stats:
    def __init__(self):
        self.sent = self.commands = self.ignored = self.sensor_errors = 0
        self.reconnects = self.id_conflicts = self.memory_errors = self.missed = 0
        self.reset_cause = "unknown"  # node/start.py tells it
        self.unit = None  # what the readings are in (config sensor.unit), for the dashboard
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
                '"sensor_errors": %d, "id_conflicts": %d, "memory_errors": %d, "missed": %d, "free_heap": %s, '
                '"reset_cause": "%s", "unit": %s}' % (
                    __version__, self.uptime_s, self.sent, backlog.count, backlog.dropped,
                    self.reconnects, wifi_losses, self.commands, self.ignored, self.sensor_errors,
                    self.id_conflicts, self.memory_errors, self.missed, "null" if free is None else "%d" % free,
                    self.reset_cause, "null" if self.unit is None else '"%s"' % self.unit))
