# What a payload on ctrlled or maison/<room>/led/set asks the LED to do.
from micropython import const

OFF = const(0)
ON = const(1)
TOGGLE = const(2)

_WORDS = {b"1": ON, b"on": ON, b"true": ON,
          b"0": OFF, b"off": OFF, b"false": OFF,
          b"toggle": TOGGLE}
_LONGEST = const(8)  # longer payloads are not commands; don't even lower() them


def parse(payload):
    """Return ON, OFF, TOGGLE, or None for anything else."""
    if len(payload) > _LONGEST:
        return None
    return _WORDS.get(bytes(payload).strip().lower())
