# The simulated board's machine.dht_readinto (nodekit/sim/simboard/machine.py hands on to this):
# drivers/dht/dht.c's protocol as the node sees it, from the board state files. Apart from
# machine.py so that a board with no DHT never loads it.
import time

import _probes
import machine


def readinto(pin, buf):
    """The DHT on the pin, from the board state file dht<pin> (frozen/_probes.py: "21.5 48",
    "unplugged", "checksum"; absent: a plausible room, phased by the chip id), the device's
    kind from dht<pin>.kind (dht22 unless it says dht11; make sim writes it from the config)."""
    if not isinstance(pin, machine.Pin):
        raise TypeError("expecting a Pin")  # mp_hal_get_pin_obj()
    if len(buf) < 5:
        raise ValueError("buffer too small")
    # The start signal: the line high 250 ms, low 18 ms, then 40 bits timed; no answer within
    # 100 us is OSError(ETIMEDOUT), 110 in MicroPython's errno.
    time.sleep_ms(268)
    got = _probes.measured("dht%d" % pin._id, pin._id)
    if got == "unplugged":
        raise OSError(110)
    if got == "checksum":
        buf[0], buf[1], buf[2], buf[3], buf[4] = 1, 2, 3, 4, 0
        return
    t, h = got
    if machine._read("dht%d.kind" % pin._id) == "dht11":  # whole degrees and percent in bytes 2 and 0
        buf[0], buf[1], buf[2], buf[3] = int(h) & 0xFF, 0, int(t) & 0xFF, 0
    else:  # tenths, 16 bits each, the temperature's top bit its sign
        hh, tt = int(round(h * 10)), int(round(abs(t) * 10))
        buf[0], buf[1], buf[2], buf[3] = hh >> 8, hh & 0xFF, (tt >> 8) | (0x80 if t < 0 else 0), tt & 0xFF
    buf[4] = (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF
