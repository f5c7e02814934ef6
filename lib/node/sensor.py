# Sensors: make() gives a function that takes a reading (a number). Add a new kind here and
# in config.SENSORS. Functions, not classes: a class costs heap on a board for nothing here.
import math
import time


def _sim():
    """A plausible room temperature drifting slowly around 21 degrees."""
    t = time.ticks_ms() / 600000  # one slow swing every hour or so
    return round(21 + 1.5 * math.sin(t * 6.283) + 0.3 * math.sin(t * 41), 2)


def make(cfg):
    if cfg["type"] == "adc":
        import machine

        return machine.ADC(cfg["pin"]).read_u16  # the board's analog input, 0..65535, as the seeds read it
    return _sim
