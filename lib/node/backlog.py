# Readings waiting to be delivered, oldest first. Preallocated at start so a
# long outage cannot fragment the heap; when full, the oldest reading is
# dropped and counted, never silently.
from array import array


class Backlog:
    def __init__(self, size, two=False):
        self.size = size
        self._value = array("f", bytes(4 * size))
        # A probe's second quantity (a DHT's humidity), taken in the same slot
        self._second = array("f", bytes(4 * size)) if two else None
        self._ticks = array("i", bytes(4 * size))  # time.ticks_ms() when read (30 bits)
        self._seq = array("I", bytes(4 * size))
        self._head = 0
        self.count = 0
        self.dropped = 0

    def push(self, value, ticks, seq, second=0):
        """Keep a reading; return True if the oldest had to be dropped for it."""
        dropped = self.count == self.size
        if dropped:
            self._head = (self._head + 1) % self.size
            self.count -= 1
            self.dropped += 1
        i = (self._head + self.count) % self.size
        self._value[i] = value
        self._ticks[i] = ticks
        self._seq[i] = seq
        if self._second is not None:
            self._second[i] = second
        self.count += 1
        return dropped

    def oldest(self):
        i = self._head
        return self._value[i], self._ticks[i], self._seq[i]

    def second(self):
        return self._second[self._head]

    def pop(self):
        self._head = (self._head + 1) % self.size
        self.count -= 1
