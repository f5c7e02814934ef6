# The node: a MicroPython sensor/actuator that reports to Mosquitto.
# Each module has one job; app.py ties them together.
__version__ = "0.1.0"


def unload(name):
    """Forget node.<name> once its work is done (config and tls run only at start), so
    its code and strings go back to the heap: an ESP8266 has about 30 KB of it."""
    import sys

    sys.modules.pop("node." + name, None)
    try:
        delattr(sys.modules[__name__], name)
    except AttributeError:
        pass
