# Sensors: make() gives a function that takes a reading (a number). Add a new kind here and
# in config.SENSORS. Functions, not classes: a class costs heap on a board for nothing here.
import math
import time


def _sim(phase):
    """A plausible room temperature drifting slowly around 21 degrees; `phase` (from the chip's
    id) so that two simulated rooms do not read the same value at the same moment."""
    t = time.ticks_ms() / 600000 + phase  # one slow swing every hour or so
    return round(21 + 1.5 * math.sin(t * 6.283) + 0.3 * math.sin(t * 41), 2)


def make(cfg):
    import machine

    if cfg["type"] == "adc":
        read = machine.ADC(cfg["pin"]).read_u16  # the board's analog input, 0..65535, as the seeds read it
        scale, offset = cfg["scale"], cfg["offset"]
        if scale == 1 and offset == 0:
            return read
        return lambda: round(read() * scale + offset, 2)  # in the config's unit
    uid = machine.unique_id()
    phase = (uid[-1] << 8 | uid[-2]) / 65536
    return lambda: _sim(phase)
