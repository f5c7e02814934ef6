# Stand-in for the ntptime module both images freeze: micropython-lib's
# micropython/net/ntptime/ntptime.py 0.1.1 (lib/micropython-lib at 8380c7bb in MicroPython
# v1.28.0; required by bundle-networking, which ports/esp8266 and ports/esp32
# boards/manifest.py include). Same attributes, same protocol, same errors; written anew.
#
# One difference, the simulated network's: a board always asks UDP port 123; here port 123
# is mapped to $SIMBOARD_NTP_PORT when set (tests run their NTP server on a free port).
from time import gmtime
import os
import socket
import sys

_getaddrinfo = socket.getaddrinfo
if sys.implementation.name == "cpython":
    # The board's name resolution and its errors (OSError -2 / -202: _lwip.py). In the VM the
    # board's socket is _lwip already; under CPython `socket` stays the standard library's.
    import _lwip

    _getaddrinfo = _lwip.wrap(_getaddrinfo)

host = "pool.ntp.org"  # ntptime.host = "..." to ask another server
timeout = 1  # seconds: the socket timeout of the one query time() makes

_ETIMEDOUT = 110  # py/mperrno.h MP_ETIMEDOUT: what a board's recv raises when nothing answers
_MIN_NTP = 3913056000  # 2024-01-01 in NTP seconds: anything less has wrapped (year 2036)


def _port():
    return int(os.getenv("SIMBOARD_NTP_PORT") or 123)


def time():
    """Seconds since the board's epoch (2000 on the ports) from one NTP query to `host`.
    Raises OSError when the name does not resolve (the port's lookup error) or nothing
    answers within `timeout` (ETIMEDOUT, 110), ValueError when the reply is too short to hold a transmit timestamp."""
    query = bytearray(48)
    query[0] = 0x1B  # LI 0, version 3, mode 3 (client)
    # AF_INET: the board's lwIP answers IPv4, where the PC may give ::1 first for localhost.
    addr = _getaddrinfo(host, _port(), socket.AF_INET)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(query, addr)
        try:
            msg = s.recv(48)
        except OSError as e:
            # A board's lwIP socket raises ETIMEDOUT (ports/esp32/modsocket.c, extmod/modlwip.c);
            # CPython raises TimeoutError, the unix VM EAGAIN (11).
            if isinstance(e, getattr(socket, "timeout", ())) or (e.args and e.args[0] in (11, _ETIMEDOUT)):
                raise OSError(_ETIMEDOUT)
            raise
    finally:
        s.close()
    if len(msg) < 44:
        # ntptime unpacks msg[40:44] with struct: py/modstruct.c raises this for a short buffer.
        raise ValueError("buffer too small")
    val = msg[40] << 24 | msg[41] << 16 | msg[42] << 8 | msg[43]  # transmit timestamp, seconds
    if val < _MIN_NTP:
        val += 0x100000000  # NTP era 1 (after 2036-02-07), as ntptime reads it
    year = gmtime(0)[0]
    if year == 2000:
        return val - 3155673600  # 1900 -> 2000
    if year == 1970:
        return val - 2208988800  # 1900 -> 1970
    raise Exception("Unsupported epoch: {}".format(year))


def settime():
    """Set the board's RTC (UTC: the ports have no time zones) from time()."""
    t = time()
    import machine

    tm = gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
