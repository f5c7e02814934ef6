# Sensors: each has read() -> a number. Add a new kind here and in config.SENSORS.
import math
import time


class Adc:
    """The board's analog input, 0..65535, as the seeds read it."""

    def __init__(self, pin):
        import machine
        self._adc = machine.ADC(pin)

    def read(self):
        return self._adc.read_u16()


class Sim:
    """A plausible room temperature drifting slowly around 21 degrees."""

    def read(self):
        t = time.ticks_ms() / 600000  # one slow swing every hour or so
        return round(21 + 1.5 * math.sin(t * 6.283) + 0.3 * math.sin(t * 41), 2)


def make(cfg):
    if cfg["type"] == "adc":
        return Adc(cfg["pin"])
    return Sim()
