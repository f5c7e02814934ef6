# Which MicroPython port this simulated board is: the chip named by $SIMBOARD_PORT
# (nodekit/sim/simnode.py sets it from the board profile; the tutorials' esp8266 by default).
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
    _install_sys()
    _install_cpython_ssl()
    import _rtc  # the board's clock: time.time()/gmtime() read its RTC, in the port's epoch

    _rtc.install()
    _install_socket()
    _install_ssl()
    _install_cpython_socket()


class _Sys:
    """sys as the port's firmware has it: sys.platform is the chip's port
    (MICROPY_PY_SYS_PLATFORM: "esp8266" in ports/esp8266/mpconfigport.h, "esp32" in
    ports/esp32/mpconfigport.h for the ESP32, S3 and C3 alike); the rest is this runtime's.
    `import sys` finds it in sys.modules before the built-in (py/builtinimport.c)."""

    platform = FAMILY

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)


def _install_sys():
    import sys

    if not isinstance(sys, _Sys):
        sys.modules["sys"] = _Sys(sys)


def _install_cpython_socket():
    # umqtt.simple 1.6+ does `import socket` and calls read()/write(), which CPython's
    # sockets lack: in this process, which runs only the board's code, the board's socket is
    # MicroPython's (nodekit/sim/compat/usocket.py). Last, once the stdlib has its own.
    import sys

    if sys.implementation.name == "cpython":
        import usocket

        sys.modules["socket"] = usocket


def _install_cpython_ssl():
    # The board's `ssl` is MicroPython's (wrap_socket with cadata, DER certificates); under
    # CPython that is nodekit/sim/compat/ussl.py over CPython's own ssl.
    import sys

    if sys.implementation.name == "cpython":
        import ussl

        sys.modules["ssl"] = ussl


def _install_ssl():
    # ESP8266: axTLS's ssl and tls (axtls.py) in both runtimes, in place of mbedTLS's.
    # (ESP32: mbedTLS, the VM's own ssl, or compat/ussl.py under CPython, as above.)
    if ESP8266:
        import sys

        if sys.implementation.name == "micropython":
            import tls

            if not hasattr(tls, "CERT_REQUIRED"):
                # A VM built with axTLS (MICROPYTHON=, a unix build configured like the
                # port): extmod/modtls_axtls.c itself, with no stand-in between.
                return
        import axtls

        sys.modules["ssl"] = axtls
        sys.modules["tls"] = axtls.tls


def _install_socket():
    # The port's name resolution (_lwip.py: no mDNS on an ESP8266). In the VM the stand-in is
    # the board's socket and usocket; under CPython, compat's usocket gets its getaddrinfo
    # (and becomes the board's socket last, _install_cpython_socket).
    import sys

    import _lwip

    if sys.implementation.name == "micropython":
        sys.modules["socket"] = sys.modules["usocket"] = _lwip
    else:
        import usocket

        usocket.getaddrinfo = _lwip.wrap(usocket.getaddrinfo)
