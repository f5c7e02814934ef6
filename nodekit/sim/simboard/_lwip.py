# The simulated board's `socket` (and `usocket`): this runtime's sockets, with the port's
# name resolution. _port.install() puts it in place: in the MicroPython VM as
# sys.modules["socket"] and ["usocket"] (umqtt.simple 1.3.4 imports usocket, newer
# versions socket); under CPython it only wraps nodekit/sim/compat/usocket.py's getaddrinfo,
# so CPython's own socket module stays the standard library's.
#
# ESP8266 (extmod/modlwip.c lwip_getaddrinfo): plain DNS through lwIP, no mDNS (ports/esp8266
# has none), so "raspberrypi.local" fails as any failed lookup does there: the callback gets
# no address and the port raises OSError(-2).
# ESP32 (ports/esp32/modsocket.c _getaddrinfo_inner): MICROPY_HW_ENABLE_MDNS_QUERIES=1
# (mpconfigport.h) asks mDNS first for a name ending in ".local", then DNS; a failed lwIP
# lookup raises OSError(-EAI_FAIL), i.e. OSError(-202).
import sys

import _port

_FAILED = -2 if _port.ESP8266 else -202


def wrap(real):
    """The port's getaddrinfo over this runtime's real one."""

    def getaddrinfo(host, port, *args):
        if _port.ESP8266 and host.lower().endswith(".local"):
            raise OSError(_FAILED)
        try:
            return real(host, port, *args)
        except OSError:  # CPython's socket.gaierror is one too
            raise OSError(_FAILED)  # the PC's resolver failed: the port's code for a failed lookup

    return getaddrinfo


if sys.implementation.name == "micropython":
    # Imported by _port.install() before it replaces sys.modules["socket"]: this is the VM's
    # built-in, whose names (socket, AF_INET, SOL_SOCKET...) this module takes on.
    import socket as _real
    from socket import *  # noqa: F401,F403

    getaddrinfo = wrap(_real.getaddrinfo)
