"""MicroPython-style sockets over CPython's: streams with read()/write().

MicroPython semantics kept: a blocking read(n) returns n bytes unless the peer
closes; a non-blocking read returns None when nothing is there; write(buf, n)
writes the first n bytes.
"""
import socket as _socket
from ssl import SSLWantReadError as _WANT_READ

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
SOL_SOCKET = _socket.SOL_SOCKET
SO_REUSEADDR = _socket.SO_REUSEADDR
IPPROTO_TCP = _socket.IPPROTO_TCP
IPPROTO_UDP = _socket.IPPROTO_UDP
TCP_NODELAY = _socket.TCP_NODELAY


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    # Boards speak IPv4 only.
    return _socket.getaddrinfo(host, port, _socket.AF_INET, _socket.SOCK_STREAM)


ETIMEDOUT = 110


def _timed(fn):
    """A call that raises what a board's socket raises when its timeout runs out:
    OSError(ETIMEDOUT) (extmod/modlwip.c, ports/esp32/modsocket.c), where CPython's
    raises TimeoutError."""
    def call(*args):
        try:
            return fn(*args)
        except _socket.timeout:
            raise OSError(ETIMEDOUT, "ETIMEDOUT") from None
    return call


class Reader:
    """readinto() as a MicroPython stream has it, over the class's read()."""

    def readinto(self, buf, n=None):
        data = self.read(len(buf) if n is None else n)
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)


class Stream(Reader):
    def __init__(self, sock):
        self._s = sock

    def connect(self, addr):
        _timed(self._s.connect)(addr)

    def __getattr__(self, name):
        # The rest (sendto, recvfrom, bind, setsockopt...) as a MicroPython socket has them.
        attr = getattr(self._s, name)
        return _timed(attr) if callable(attr) else attr

    def setblocking(self, flag):
        self._s.setblocking(flag)

    def settimeout(self, t):
        self._s.settimeout(t)

    def fileno(self):
        return self._s.fileno()

    def pending(self):
        return self._s.pending() if hasattr(self._s, "pending") else 0

    def read(self, n=-1):
        if n < 0:
            chunks = []
            while True:
                b = self._s.recv(65536)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        buf = bytearray()
        while len(buf) < n:
            try:
                b = _timed(self._s.recv)(n - len(buf))
            except (BlockingIOError, _WANT_READ):
                # Non-blocking: what is there, or None when nothing is.
                return bytes(buf) if buf else None
            if not b:
                break
            buf += b
        return bytes(buf)


    def write(self, buf, n=None):
        data = buf.encode() if isinstance(buf, str) else memoryview(buf)
        if n is not None:
            data = data[:n]
        self._s.sendall(data)
        return len(data)

    send = write

    def recv(self, n):
        return _timed(self._s.recv)(n)

    def close(self):
        self._s.close()


def socket(af=AF_INET, type=SOCK_STREAM, proto=0):
    return Stream(_socket.socket(af, type, proto))
