# The ESP8266 port's `ssl` module as MicroPython v1.28.0 builds it: micropython-lib's
# python-stdlib/ssl/ssl.py 0.2.1 (frozen: ports/esp8266/boards/manifest.py requires
# bundle-networking) over the `tls` module of extmod/modtls_axtls.c, that is axTLS
# (lib/axtls at 531cab9c, built by ports/esp8266/Makefile with -DRT_MAX_PLAIN_LENGTH=1024
# -DRT_EXTRA=4096). Installed as sys.modules["ssl"] and ["tls"] by _port.install().
#
# The TLS is real: the VM's mbedTLS `tls` or, under CPython, OpenSSL (nodekit/sim/compat/ussl.py),
# held to what axTLS does. Between the raw socket and that engine sits _Wire, which reads
# the stream record by record as axTLS's basic_read() does (5-byte header, then the body)
# and so applies axTLS's buffer limit to each record header the broker sends.
import sys as _sys

_MP = _sys.implementation.name == "micropython"
if _MP:
    import io as _io
    import tls as _engine  # the VM's own (mbedTLS), taken before tls is replaced by ours

    _Base = _io.IOBase  # a Python IOBase with readinto/write/ioctl is a stream to native code (py/modio.c)
else:
    import ussl as _engine  # nodekit/sim/compat/ussl.py

    _Base = object

# extmod/modtls_axtls.c: the module's constants, all of them (no CERT_OPTIONAL/CERT_REQUIRED:
# axTLS cannot verify a certificate chain).
PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0

_OVERFLOW = -257  # lib/axtls ssl/ssl.h SSL_ERROR_RECORD_OVERFLOW
_LOST = -256      # SSL_ERROR_CONN_LOST
# ssl/tls1.c basic_read(): a record whose length field exceeds RT_MAX_PLAIN_LENGTH + RT_EXTRA -
# BM_RECORD_OFFSET (1024 + 4096 - 5 on ESP8266) is refused with SSL_ERROR_RECORD_OVERFLOW.
_RECORD_MAX = 1024 + 4096 - 5
_PLAIN_MAX = 1024  # ssl/tls1.c ssl_write(): writes are cut into records of RT_MAX_PLAIN_LENGTH (1024)
# ssl/tls1.c ssl_prot_prefs with CONFIG_SSL_PROT_LOW (extmod/axtls-include/config.h): RSA key
# exchange only, so a server with an EC key has no suite in common and refuses the handshake.
_SUITES_OPENSSL = "AES128-SHA:AES128-SHA256:AES256-SHA:AES256-SHA256"
_SUITES_MBEDTLS = ("TLS-RSA-WITH-AES-128-CBC-SHA", "TLS-RSA-WITH-AES-128-CBC-SHA256",
                   "TLS-RSA-WITH-AES-256-CBC-SHA", "TLS-RSA-WITH-AES-256-CBC-SHA256")
# extmod/modtls_axtls.c ssl_error_tab2: the text beside each error it names.
_NAMES = {_LOST: "CONN_LOST", _OVERFLOW: "RECORD_OVERFLOW"}


def _error(err):
    # modtls_axtls.c ssl_raise_error(): OSError(err, name) for a named code, else OSError(err).
    name = _NAMES.get(err)
    return OSError(err, name) if name else OSError(err)


class _Wire(_Base):
    """The raw socket as axTLS reads it: one record header (5 bytes), then that record's body.
    err: the axTLS error that ended the stream (0 while it lives); alert: the last plaintext
    alert the server sent during the handshake (basic_read() returns it as -alert)."""

    def __init__(self, sock):
        self.s = sock
        self.hdr = bytearray(5)
        self.got = 0       # header bytes read so far
        self.given = 0     # header bytes handed to the engine
        self.size = self.left = 0  # the current record's body: its length, the bytes still to come
        self.kind = 0
        self.plain = True  # until the server's ChangeCipherSpec
        self.err = self.alert = 0

    def _recv(self, mv):
        try:
            n = self.s.readinto(mv)
        except OSError:
            n = 0  # a timeout or reset: axTLS's SOCKET_READ fails and basic_read() says CONN_LOST
        if n == 0:
            self.err = _LOST
        return n

    def readinto(self, buf):
        if self.err:
            return -5  # EIO: the engine gives up; SSLSocket raises axTLS's error instead
        mv = memoryview(buf)
        if self.left == 0 and self.given == 5:
            self.got = self.given = 0
        if self.got < 5:
            while self.got < 5:  # the whole header first, as basic_read() needs it
                n = self._recv(memoryview(self.hdr)[self.got:])
                if not n:
                    return n  # None: would block (the header's start is kept), 0: lost
                self.got += n
            h = self.hdr
            size = h[3] << 8 | h[4]
            if size > _RECORD_MAX:
                # ssl/tls1.c basic_read(): printf (to the console: shared/libc/printf.c), then
                # SSL_ERROR_RECORD_OVERFLOW
                print("TLS buffer overflow, record size: %u (+5)" % size)
                self.err = _OVERFLOW
                return -5
            self.kind = h[0]
            self.size = self.left = size
        if self.given < 5:
            n = min(len(mv), 5 - self.given)
            mv[:n] = self.hdr[self.given:self.given + n]
            self.given += n
            return n
        n = self._recv(mv[:min(len(mv), self.left)])
        if n:
            pos = self.size - self.left
            if self.kind == 21 and self.plain and pos <= 1 < pos + n:
                self.alert = mv[1 - pos]  # an alert is (level, description)
            self.left -= n
            if self.kind == 20:
                self.plain = False
        return n

    def write(self, buf):
        try:
            return self.s.write(buf)
        except OSError:
            self.err = _LOST
            return -5

    def ioctl(self, req, arg):
        if req == 4:  # MP_STREAM_CLOSE: how the VM's tls closes the socket under it
            self.close()
        return 0

    def close(self):
        self.s.close()

    def setblocking(self, flag):
        self.s.setblocking(flag)


class _Socket:
    """extmod/modtls_axtls.c SSLSocket: read, readinto, readline, write, setblocking, close
    (no settimeout: the raw socket's timeout holds)."""

    def __init__(self, s, w):
        self._s = s
        self._w = w

    def _failed(self, e):
        err = self._w.err
        if err == _LOST:
            return b""  # ssl_socket_read(): SSL_ERROR_CONN_LOST is end of stream
        if err:
            raise _error(err)
        raise e

    def read(self, n=-1):
        try:
            return self._s.read(n)
        except OSError as e:
            return self._failed(e)

    def readinto(self, buf, n=None):
        try:
            return self._s.readinto(buf, len(buf) if n is None else n)
        except OSError as e:
            return len(self._failed(e))

    def readline(self):
        line = b""
        while not line.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            line += c
        return line

    def write(self, buf, n=None):
        mv = memoryview(buf)[:len(buf) if n is None else n]
        done = 0
        try:
            while done < len(mv):
                done += self._s.write(mv[done:done + _PLAIN_MAX]) or 0
        except OSError as e:
            self._failed(e)
            return 0  # ssl_socket_write(): SSL_ERROR_CONN_LOST is end of stream
        return done

    def setblocking(self, flag):
        self._s.setblocking(flag)

    def close(self):
        self._s.close()


def _rsa_key(der):
    # ssl/asn1.c asn1_get_private_key(): a PKCS#1 RSAPrivateKey only, read from offset 7
    # (SEQUENCE with a 2-byte length, INTEGER 0, then the modulus INTEGER).
    return len(der) > 8 and der[0] == 0x30 and der[1] == 0x82 and der[4:7] == b"\x02\x01\x00" and der[7] == 2


class _Context:
    """extmod/modtls_axtls.c SSLContext: load_cert_chain and wrap_socket; verify_mode reads
    CERT_NONE whatever was stored (ssl_context_attr)."""

    def __init__(self, protocol):
        self._key = self._cert = None

    verify_mode = property(lambda self: CERT_NONE, lambda self, v: None)

    def load_cert_chain(self, cert, key):
        self._cert, self._key = cert, key

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        if self._key is not None and not _rsa_key(self._key):
            raise ValueError("invalid key")  # ssl_obj_memory_load(SSL_OBJ_RSA_KEY) failed
        w = _Wire(sock)
        try:
            if _MP:
                ctx = _engine.SSLContext(_engine.PROTOCOL_TLS_CLIENT)
                ctx.verify_mode = _engine.CERT_NONE  # SSL_SERVER_VERIFY_LATER: never verified
                ctx.set_ciphers(_SUITES_MBEDTLS)
                if self._key is not None:
                    ctx.load_cert_chain(self._cert, self._key)
                s = ctx.wrap_socket(w, server_hostname=server_hostname)
            else:
                s = _engine.wrap_stream(w, server_hostname, _SUITES_OPENSSL, self._cert, self._key, tls12=True)
        except OSError as e:
            # ssl_socket_make_new() raises the handshake's axTLS code: a fatal alert from the
            # server is -alert (basic_read(); -40 handshake_failure: no cipher suite in common).
            if w.err:
                raise _error(w.err)
            if w.alert:
                raise _error(-w.alert)
            raise e
        return _Socket(s, w)


class tls:
    """The `tls` module of extmod/modtls_axtls.c (micropython-lib's ssl.py imports it)."""

    SSLContext = _Context
    PROTOCOL_TLS_CLIENT = PROTOCOL_TLS_CLIENT
    PROTOCOL_TLS_SERVER = PROTOCOL_TLS_SERVER
    CERT_NONE = CERT_NONE


# micropython-lib python-stdlib/ssl/ssl.py 0.2.1, the frozen `ssl` over that `tls`.
class SSLContext:
    def __init__(self, *args):
        self._context = tls.SSLContext(*args)
        self._context.verify_mode = CERT_NONE

    verify_mode = property(lambda self: self._context.verify_mode,
                           lambda self, v: setattr(self._context, "verify_mode", v))

    def load_cert_chain(self, certfile, keyfile):
        if isinstance(certfile, str):
            with open(certfile, "rb") as f:
                certfile = f.read()
        if isinstance(keyfile, str):
            with open(keyfile, "rb") as f:
                keyfile = f.read()
        self._context.load_cert_chain(certfile, keyfile)

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile:
            with open(cafile, "rb") as f:
                cadata = f.read()
        # axTLS's SSLContext has no load_verify_locations: AttributeError here, as on the board.
        self._context.load_verify_locations(cadata)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        return self._context.wrap_socket(sock, server_side=server_side,
                                         do_handshake_on_connect=do_handshake_on_connect,
                                         server_hostname=server_hostname)


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE, cadata=None,
                server_hostname=None, do_handshake=True):
    con = SSLContext(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
    if cert or key:
        con.load_cert_chain(cert, key)
    if cadata:
        con.load_verify_locations(cadata=cadata)
    con.verify_mode = cert_reqs
    return con.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake,
                           server_hostname=server_hostname)
