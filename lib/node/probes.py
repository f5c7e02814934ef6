# The probes: a DHT22/DHT11 (temperature and humidity on one pin) and a DS18B20 (1-Wire), read
# with the firmware's drivers (machine.dht_readinto, the frozen onewire and ds18x20). Imported by
# node/sensor.py only when the config names one: a board reading its ADC carries none of this.
# Each gives (read, second, start), as sensor.make() does.
import time

import machine

CONVERT_MS = 750  # a DS18B20's 12-bit conversion, at most (its datasheet's tCONV); node/app.py asks 760 ms ahead


def dht(kind, pin):
    # machine.dht_readinto is the firmware's DHT driver (drivers/dht/dht.c, MICROPY_PY_MACHINE_DHT_READINTO
    # in ports/esp8266 and ports/esp32 mpconfigport.h); its 5 bytes are decoded here as the frozen
    # dht module does (micropython-lib drivers/sensor/dht/dht.py), without importing that
    # module: its classes would keep about 0.7 KB of an ESP8266's heap that TLS handshakes need.
    # A read holds the loop about 270 ms (the start signal): what the driver must.
    p = machine.Pin(pin)
    buf = bytearray(5)
    dht11 = kind == "dht11"

    def read():
        try:
            machine.dht_readinto(p, buf)
        except OSError:  # ETIMEDOUT: nothing answered the start signal
            raise OSError("no answer from the %s on GPIO%d" % (kind, pin))
        if (buf[0] + buf[1] + buf[2] + buf[3]) & 0xFF != buf[4]:
            raise Exception("checksum error")
        if dht11:
            return buf[2]
        t = ((buf[2] & 0x7F) << 8 | buf[3]) * 0.1
        return -t if buf[2] & 0x80 else t

    def humidity():  # of the same read
        return buf[0] if dht11 else (buf[0] << 8 | buf[1]) * 0.1

    return read, humidity, None


def ds18b20(pin):
    import ds18x20
    import onewire

    ds = ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin)))
    found = [None, None]  # the probe's ROM (None: look again), when its conversion started

    def start():
        try:
            if found[0] is None:
                roms = ds.scan()
                found[0] = roms[0] if roms else None
            if found[0] is not None:
                ds.convert_temp()
                found[1] = time.ticks_ms()
        except Exception:  # unplugged: the reading says so
            found[0] = found[1] = None

    def read():
        if found[1] is None:  # not asked ahead (the first reading, a held loop): ask now
            start()
            if found[0] is None:
                raise OSError("no DS18B20 answers on the 1-Wire bus (GPIO%d)" % pin)
        wait = CONVERT_MS - time.ticks_diff(time.ticks_ms(), found[1])
        found[1] = None
        if wait > 0:
            time.sleep_ms(wait)  # until then its scratchpad holds the last result (85 at power-on)
        try:
            return ds.read_temp(found[0])
        except Exception:
            found[0] = None  # scanned again next time: the probe is found when it comes back
            raise

    return read, None, start
