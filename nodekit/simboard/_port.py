# Which MicroPython port this simulated board is: the chip named by $SIMBOARD_PORT
# (nodekit/sim.py sets it from the board profile; the tutorials' esp8266 by default).
# Each stand-in module (machine, network, socket, ssl, ntptime) reads CHIP/FAMILY here and
# enforces that port's rules, each cited beside its code from MicroPython v1.28.0's source:
# the simulated board is never kinder than the port it claims to be.
import os

CHIPS = ("esp8266", "esp32", "esp32s3", "esp32c3")
CHIP = os.getenv("SIMBOARD_PORT") or "esp8266"
if CHIP not in CHIPS:
    raise SystemExit("simboard: SIMBOARD_PORT=%s is not a chip the simulated board knows (%s)"
                     % (CHIP, ", ".join(CHIPS)))
# The two ports' sources: ports/esp8266 and ports/esp32 (which builds the S3 and C3 too).
FAMILY = "esp8266" if CHIP == "esp8266" else "esp32"
ESP8266 = FAMILY == "esp8266"


def install():
    """Put the port's stand-ins where the board code will import them, before it runs.
    Under CPython, stand-ins whose names the standard library also uses (ssl, socket)
    cannot sit on sys.path (the stdlib would import them): they are entered into
    sys.modules here, after the stdlib has its own."""
    return
