# Sensors: make() gives (read, second, start). read() takes a reading (a number); second, for
# a probe that measures two quantities, gives the other of the same measure (a DHT's humidity),
# else None; start, for a probe that must be asked ahead (a DS18B20's conversion), is called
# shortly before each reading (node/app.py _START_MS), else None. The probes are in
# node/probes.py. Add a new kind here and in config.SENSORS. Functions, not classes: a class
# costs heap on a board for nothing here.
import math
import time

import machine


def _sim(phase):
    """A plausible room temperature drifting slowly around 21 degrees; `phase` (from the chip's
    id) so that two simulated rooms do not read the same value at the same moment."""
    t = time.ticks_ms() / 600000 + phase  # one slow swing every hour or so
    return round(21 + 1.5 * math.sin(t * 6.283) + 0.3 * math.sin(t * 41), 2)


def make(cfg):
    kind = cfg["type"]
    second = start = None
    if kind == "adc":
        read = machine.ADC(cfg["pin"]).read_u16  # the board's analog input, 0..65535, as the seeds read it
    elif kind == "sim":
        uid = machine.unique_id()
        phase = (uid[-1] << 8 | uid[-2]) / 65536
        read = lambda: _sim(phase)
    else:
        from node import probes

        read, second, start = probes.ds18b20(cfg["pin"]) if kind == "ds18b20" else probes.dht(kind, cfg["pin"])
    scale, offset = cfg["scale"], cfg["offset"]
    if scale != 1 or offset != 0:  # in the config's unit (an ADC), or a probe's calibration
        raw = read
        read = lambda: round(raw() * scale + offset, 2)
    return read, second, start
