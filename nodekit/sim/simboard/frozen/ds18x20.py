# Stand-in for the ds18x20 driver both images freeze (micropython-lib
# micropython/drivers/sensor/ds18x20/ds18x20.py, require("ds18x20") in ports/*/boards/manifest.py):
# the same class, methods, decoding and errors, over the simulated bus of frozen/onewire.py.
# The device as its datasheet has it: a conversion takes up to 750 ms (12 bits); until one has
# finished, the scratchpad holds the last result, 85 degrees after power-on.
import time

import _probes

_CONVERT_MS = 750


def _scratchpad(t, corrupt=False):
    raw = int(round(t * 16)) & 0xFFFF
    buf = bytearray([raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10, 0])
    from onewire import OneWire

    buf[8] = OneWire.crc8(None, buf[:8]) ^ (0x55 if corrupt else 0)
    return buf


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire
        self.buf = bytearray(9)
        self._last = 85.0  # the scratchpad at power-on
        self._started = None
        self._converting = None

    def scan(self):
        return [rom for rom in self.ow.scan() if rom[0] in (0x10, 0x22, 0x28)]

    def convert_temp(self):
        self.ow.reset(True)
        self._settle()
        got = _probes.measured("ds18b20_%d" % self.ow.pin._id, self.ow.pin._id)
        self._converting = got if got == "checksum" else got[0]
        self._started = time.ticks_ms()

    def _settle(self):
        if self._started is not None and time.ticks_diff(time.ticks_ms(), self._started) >= _CONVERT_MS:
            if self._converting != "checksum":
                self._last = self._converting
            self._started = None

    def read_scratch(self, rom):
        self.ow.reset(True)
        self._settle()
        corrupt = self._converting == "checksum" and self._started is None
        self.buf[:] = _scratchpad(self._last, corrupt)
        if self.ow.crc8(self.buf):
            raise Exception("CRC error")
        return self.buf

    def read_temp(self, rom):
        buf = self.read_scratch(rom)
        if rom[0] == 0x10:
            if buf[1]:
                t = buf[0] >> 1 | 0x80
                t = -((~t + 1) & 0xFF)
            else:
                t = buf[0] >> 1
            return t - 0.25 + (buf[7] - buf[6]) / buf[7]
        else:
            t = buf[1] << 8 | buf[0]
            if t & 0x8000:  # sign bit set
                t = -((t ^ 0xFFFF) + 1)
            return t / 16
