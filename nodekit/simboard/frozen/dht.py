# Stand-in for the dht driver both images freeze (micropython-lib
# micropython/drivers/sensor/dht/dht.py, require("dht") in ports/esp8266/boards/manifest.py and
# ports/esp32/boards/manifest.py): the same classes and methods, the same decoding of the
# sensor's 5 bytes, the same errors. Its C half, dht_readinto (drivers/dht/dht.c), is simulated
# from the board state file dht<pin> (frozen/_probes.py).
import time

import _probes


def _readinto(pin, buf, kind):
    # drivers/dht/dht.c dht_readinto: the start signal holds the line high 250 ms, then low
    # 18 ms, then times 40 bits; a device that does not answer within 100 us (or a pulse
    # that never ends) is OSError(ETIMEDOUT), 110 in MicroPython's errno.
    time.sleep_ms(268)
    got = _probes.measured("dht%d" % pin._id, pin._id)
    if got == "unplugged":
        raise OSError(110)
    if got == "checksum":
        buf[0:5] = b"\x01\x02\x03\x04\x00"
        return
    t, h = got
    if kind == 11:  # whole degrees and percent in bytes 0 and 2 (DHT11.humidity/temperature)
        buf[0], buf[1], buf[2], buf[3] = int(h) & 0xFF, 0, int(t) & 0xFF, 0
    else:  # tenths, 16 bits each, the temperature's top bit its sign (DHT22)
        hh, tt = int(round(h * 10)), int(round(abs(t) * 10))
        buf[0], buf[1], buf[2], buf[3] = hh >> 8, hh & 0xFF, (tt >> 8) | (0x80 if t < 0 else 0), tt & 0xFF
    buf[4] = (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF


class DHTBase:
    _kind = 22

    def __init__(self, pin):
        self.pin = pin
        self.buf = bytearray(5)

    def measure(self):
        buf = self.buf
        _readinto(self.pin, buf, self._kind)
        if (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF != buf[4]:
            raise Exception("checksum error")


class DHT11(DHTBase):
    _kind = 11

    def humidity(self):
        return self.buf[0]

    def temperature(self):
        return self.buf[2]


class DHT22(DHTBase):
    def humidity(self):
        return (self.buf[0] << 8 | self.buf[1]) * 0.1

    def temperature(self):
        t = ((self.buf[2] & 0x7F) << 8 | self.buf[3]) * 0.1
        if self.buf[2] & 0x80:
            t = -t
        return t
