# The simulated board's machine.dht_readinto (nodekit/simboard/machine.py hands on to this):
# drivers/dht/dht.c's protocol as the node sees it, from the board state files. Apart from
# machine.py so that a board with no DHT never loads it.
import time

import machine


def readinto(pin, buf):
    """The DHT on the pin, from the board state file dht<pin> ("21.5 48",
    "unplugged", "checksum"; absent: a plausible room, phased by the chip id), the device's
    kind from dht<pin>.kind (dht22 unless it says dht11; make sim writes it from the config)."""
    if not isinstance(pin, machine.Pin):
        raise TypeError("expecting a Pin")  # mp_hal_get_pin_obj()
    if len(buf) < 5:
        raise ValueError("buffer too small")
    # The start signal: the line high 250 ms, low 18 ms, then 40 bits timed; no answer within
    # 100 us is OSError(ETIMEDOUT), 110 in MicroPython's errno.
    time.sleep_ms(268)
    s = machine._read("dht%d" % pin._id)
    if s == "unplugged":
        raise OSError(110)
    if s == "checksum":
        buf[0], buf[1], buf[2], buf[3], buf[4] = 1, 2, 3, 4, 0
        return
    if s:
        words = s.split()
        t, h = float(words[0]), float(words[1]) if len(words) > 1 else 45.0
    else:
        import math

        uid = machine.unique_id()
        x = time.ticks_ms() / 600000 + (uid[-1] << 8 | uid[-2]) / 65536 + pin._id / 7
        t, h = 21 + 1.5 * math.sin(x * 6.283), 45 + 8 * math.sin(x * 4.1)
    if machine._read("dht%d.kind" % pin._id) == "dht11":  # whole degrees and percent in bytes 2 and 0
        buf[0], buf[1], buf[2], buf[3] = int(h) & 0xFF, 0, int(t) & 0xFF, 0
    else:  # tenths, 16 bits each, the temperature's top bit its sign
        hh, tt = int(round(h * 10)), int(round(abs(t) * 10))
        buf[0], buf[1], buf[2], buf[3] = hh >> 8, hh & 0xFF, (tt >> 8) | (0x80 if t < 0 else 0), tt & 0xFF
    buf[4] = (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF
