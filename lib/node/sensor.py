# Sensors: make() gives (read, second, start). read() takes a reading (a number); second, for
# a probe that measures two quantities, gives the other of the same measure (a DHT's humidity),
# else None; start, for a probe that must be asked ahead (a DS18B20's conversion), is called
# START_MS before each reading, else None. The probes use the firmware's drivers
# (machine.dht_readinto, the frozen onewire and ds18x20). Add a new kind here and in config.SENSORS. Functions, not classes:
# a class costs heap on a board for nothing here.
import math
import time

import machine
from micropython import const

START_MS = const(760)  # a DS18B20's 12-bit conversion takes up to 750 ms (its datasheet's tCONV)


def _sim(phase):
    """A plausible room temperature drifting slowly around 21 degrees; `phase` (from the chip's
    id) so that two simulated rooms do not read the same value at the same moment."""
    t = time.ticks_ms() / 600000 + phase  # one slow swing every hour or so
    return round(21 + 1.5 * math.sin(t * 6.283) + 0.3 * math.sin(t * 41), 2)


def _dht(kind, pin):
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


def _ds18b20(pin):
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
        wait = START_MS - time.ticks_diff(time.ticks_ms(), found[1])
        found[1] = None
        if wait > 0:
            time.sleep_ms(wait)  # until then its scratchpad holds the last result (85 at power-on)
        try:
            return ds.read_temp(found[0])
        except Exception:
            found[0] = None  # scanned again next time: the probe is found when it comes back
            raise

    return read, None, start


def make(cfg):
    kind = cfg["type"]
    second = start = None
    if kind == "adc":
        read = machine.ADC(cfg["pin"]).read_u16  # the board's analog input, 0..65535, as the seeds read it
    elif kind == "sim":
        uid = machine.unique_id()
        phase = (uid[-1] << 8 | uid[-2]) / 65536
        read = lambda: _sim(phase)
    elif kind == "ds18b20":
        read, second, start = _ds18b20(cfg["pin"])
    else:
        read, second, start = _dht(kind, cfg["pin"])
    scale, offset = cfg["scale"], cfg["offset"]
    if scale != 1 or offset != 0:  # in the config's unit (an ADC), or a probe's calibration
        raw = read
        read = lambda: round(raw() * scale + offset, 2)
    return read, second, start
