# The node: a MicroPython sensor/actuator that reports to Mosquitto.
# Each module has one job; app.py ties them together.
__version__ = "0.1.0"
