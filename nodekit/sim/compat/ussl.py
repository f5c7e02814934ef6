"""MicroPython's ssl.wrap_socket() signature over CPython's ssl module.

Certificates and keys arrive as DER bytes, as on a board; CPython's
load_cert_chain wants files, so the client pair goes through a private
temporary folder that is removed at once.
"""
import os
import ssl as _ssl
import tempfile

from usocket import Reader, Stream

CERT_NONE = _ssl.CERT_NONE
CERT_OPTIONAL = _ssl.CERT_OPTIONAL
CERT_REQUIRED = _ssl.CERT_REQUIRED


def _key_pem(der):
    # Any DER key a board takes (PKCS#1, SEC1, PKCS#8) as the PEM CPython wants.
    from cryptography.hazmat.primitives import serialization as s
    key = s.load_der_private_key(der, None)
    return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())


def _load_pair(ctx, cert, key):
    with tempfile.TemporaryDirectory() as d:
        cpath, kpath = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        with open(cpath, "w") as f:
            f.write(_ssl.DER_cert_to_PEM_cert(cert))
        with open(os.open(kpath, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(_key_pem(key))
        ctx.load_cert_chain(cpath, kpath)


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE,
                cadata=None, server_hostname=None, do_handshake=True):
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = cert_reqs == CERT_REQUIRED and bool(server_hostname)
    ctx.verify_mode = cert_reqs
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    if cert:
        _load_pair(ctx, cert, key)
    raw = sock._s if isinstance(sock, Stream) else sock
    return Stream(ctx.wrap_socket(raw, server_hostname=server_hostname,
                                  do_handshake_on_connect=do_handshake))


# --- TLS over a MicroPython-style stream (what the VM's tls.SSLContext.wrap_socket does
# with any stream object): used by the ESP8266 profile's axTLS stand-in
# (nodekit/sim/simboard/axtls.py), which must see every TLS record header on the wire.
_AGAIN = object()


class _BioStream(Reader):
    """An SSLObject over MemoryBIOs, its bytes read with stream.readinto() and written with
    stream.write(), each of which may return None (would block) or -errno, as MicroPython's
    stream protocol does for a Python io.IOBase."""

    def __init__(self, stream, ctx, server_hostname):
        self._io = stream
        self._in, self._out = _ssl.MemoryBIO(), _ssl.MemoryBIO()
        self._o = ctx.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self._buf = bytearray(4096)

    def _flush(self):
        data = memoryview(self._out.read())
        while data:
            n = self._io.write(data)
            if n is None:
                continue  # the socket would block: a board's write loops the same way
            if n < 0:
                raise OSError(-n, "write failed")
            data = data[n:]

    def _pump(self):
        """One read from the stream into the TLS engine; False when nothing is there now."""
        n = self._io.readinto(self._buf)
        if n is None:
            return False
        if n < 0:
            raise OSError(-n, "read failed")
        if n == 0:
            self._in.write_eof()
        else:
            self._in.write(bytes(self._buf[:n]))
        return True

    def _run(self, op, *args):
        """op's result, or _AGAIN when it needs bytes that have not arrived (non-blocking)."""
        while True:
            try:
                r = op(*args)
                self._flush()
                return r
            except _ssl.SSLWantReadError:
                self._flush()
                if not self._pump():
                    return _AGAIN
            except _ssl.SSLZeroReturnError:
                return b""  # close_notify: end of stream

    def do_handshake(self):
        if self._run(self._o.do_handshake) is _AGAIN:
            raise OSError(11, "EAGAIN")  # a board's handshake blocks; only a non-blocking stream gets here

    def read(self, n=-1):
        r = self._run(self._o.read, 16384 if n is None or n < 0 else n)
        return None if r is _AGAIN else r

    def write(self, buf):
        r = self._run(self._o.write, bytes(buf))
        return None if r is _AGAIN else r

    def setblocking(self, flag):
        self._io.setblocking(flag)

    def close(self):
        self._io.close()


def wrap_stream(stream, server_hostname=None, ciphers=None, cert=None, key=None, tls12=False):
    """TLS client over `stream` (readinto/write/setblocking/close), handshake done, never
    verifying the server: the ESP8266 port's axTLS cannot (nodekit/sim/simboard/axtls.py).
    ciphers: OpenSSL names; tls12: no TLS 1.3 (whose suites set_ciphers cannot limit)."""
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = _ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = _ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    if cert:
        _load_pair(ctx, cert, key)
    s = _BioStream(stream, ctx, server_hostname)
    s.do_handshake()
    return s
