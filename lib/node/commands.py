# What a payload on ctrlled or maison/<room>/led/set asks the LED to do.
from micropython import const

OFF = const(0)
ON = const(1)
TOGGLE = const(2)
_LONGEST = const(8)  # longer payloads are not commands; don't even lower() them


def parse(payload):
    """Return ON, OFF, TOGGLE, or None for anything else."""
    if len(payload) > _LONGEST:
        return None
    try:
        word = bytes(payload).strip().lower().decode()  # bytes: ASCII rules on both runtimes
    except UnicodeError:  # binary garbage
        return None
    # Short texts, which MicroPython keeps as interned names rather than objects on the heap
    # (a table of bytes took 0.3 KB of an ESP8266's).
    if word in ("1", "on", "true"):
        return ON
    if word in ("0", "off", "false"):
        return OFF
    return TOGGLE if word == "toggle" else None
