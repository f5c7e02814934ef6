# Stand-in for the dht driver both images freeze (micropython-lib
# micropython/drivers/sensor/dht/dht.py, require("dht") in ports/esp8266/boards/manifest.py and
# ports/esp32/boards/manifest.py), over the simulated board's machine.dht_readinto: the driver as
# it is, for code that uses it (the node calls machine.dht_readinto itself, node/sensor.py).
import machine

dht_readinto = machine.dht_readinto  # both ports have it in machine (the driver tries that first)

del machine


class DHTBase:
    def __init__(self, pin):
        self.pin = pin
        self.buf = bytearray(5)

    def measure(self):
        buf = self.buf
        dht_readinto(self.pin, buf)
        if (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF != buf[4]:
            raise Exception("checksum error")


class DHT11(DHTBase):
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
