# Readings waiting to be delivered, oldest first. Preallocated at start so a
# long outage cannot fragment the heap; when full, the oldest reading is
# dropped and counted, never silently. The readings are consecutive (only the
# oldest is ever dropped), so their seq numbers are not kept: the oldest's is
# the node's last seq less the count waiting, plus one.
from array import array


class Backlog:
    def __init__(self, size, two=False):
        self.size = size
        self._value = array("f", bytes(4 * size))
        self._ticks = array("i", bytes(4 * size))  # time.ticks_ms() when read (30 bits)
        # A probe's second quantity (a DHT's humidity, 0..100 % in tenths), taken in the same slot
        self._second = array("H", bytes(2 * size)) if two else None
        self._head = 0
        self.count = 0
        self.dropped = 0

    def push(self, value, ticks, second=0):
        """Keep a reading; return True if the oldest had to be dropped for it."""
        dropped = self.count == self.size
        if dropped:
            self._head = (self._head + 1) % self.size
            self.count -= 1
            self.dropped += 1
        i = (self._head + self.count) % self.size
        self._value[i] = value
        self._ticks[i] = ticks
        if self._second is not None:
            self._second[i] = int(second * 10 + 0.5)
        self.count += 1
        return dropped

    def oldest(self):
        """(value, ticks) of the oldest reading."""
        i = self._head
        return self._value[i], self._ticks[i]

    def second(self):
        return self._second[self._head] / 10

    def pop(self):
        self._head = (self._head + 1) % self.size
        self.count -= 1
