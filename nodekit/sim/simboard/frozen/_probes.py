# What the simulated board's 1-Wire probe measures, for the onewire and ds18x20 stand-ins
# (a DHT's: machine.dht_readinto): the board state file ds18b20_<pin> (as adc<pin> is the ADC's),
# set by tests and make sim while the node runs:
#   absent       a plausible room, its swing phased by the chip id (rooms differ)
#   "21.5"       this temperature
#   "unplugged"  nothing answers on the pin
#   "checksum"   the frame comes back corrupted (a DHT's checksum, a DS18B20's CRC)
import math
import time

import machine


def state(name):
    return machine._read(name)


def room(pin):
    """(temperature, humidity) of the simulated room."""
    uid = machine.unique_id()
    t = time.ticks_ms() / 600000 + (uid[-1] << 8 | uid[-2]) / 65536 + pin / 7
    return 21 + 1.5 * math.sin(t * 6.283), 45 + 8 * math.sin(t * 4.1)


def measured(name, pin):
    """(temperature, humidity), or the state's word ("unplugged", "checksum")."""
    s = state(name)
    if not s:
        return room(pin)
    if s in ("unplugged", "checksum"):
        return s
    words = s.split()
    return float(words[0]), float(words[1]) if len(words) > 1 else 45.0
