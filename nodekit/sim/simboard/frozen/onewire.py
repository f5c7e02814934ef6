# Stand-in for the onewire driver both images freeze (micropython-lib
# micropython/drivers/bus/onewire/onewire.py, require("onewire") in ports/*/boards/manifest.py):
# the same class, constants and errors. The bus holds at most one simulated DS18B20, present
# unless the board state file ds18b20_<pin> says "unplugged" (frozen/_probes.py); its bit-level
# protocol (_onewire, a C module) is not simulated, only what the DS18X20 driver sees of it.
import _probes


class OneWireError(Exception):
    pass


class OneWire:
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC
    # A DS18B20's 64-bit ROM: family 0x28, serial, CRC (as read from a real one)
    _ROM = bytearray(b"\x28\xff\x4c\x19\x64\x15\x02\x8a")

    def __init__(self, pin):
        self.pin = pin
        self.pin.init(pin.OPEN_DRAIN, pin.PULL_UP)

    def _present(self):
        return _probes.state("ds18b20_%d" % self.pin._id) != "unplugged"

    def reset(self, required=False):
        # A presence pulse answers the reset when a device is on the bus.
        reset = self._present()
        if required and not reset:
            raise OneWireError
        return reset

    def scan(self):
        # onewire.py scan(): _search_rom returns (None, 0) when no device answers the reset.
        return [bytearray(self._ROM)] if self._present() else []

    def crc8(self, data):
        crc = 0  # Dallas/Maxim CRC-8 (x^8 + x^5 + x^4 + 1), as _onewire.crc8 computes it
        for b in data:
            for _ in range(8):
                mix = (crc ^ b) & 1
                crc >>= 1
                if mix:
                    crc ^= 0x8C
                b >>= 1
        return crc
