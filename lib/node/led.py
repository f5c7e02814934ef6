# The LED the commands switch. It is off at power-on.
import machine


class Led:
    def __init__(self, pin, active_low):
        self._active_low = active_low
        self._pin = machine.Pin(pin, machine.Pin.OUT, value=1 if active_low else 0)
        self.on = False

    def set(self, on):
        on = bool(on)
        self._pin.value(on != self._active_low)
        self.on = on
