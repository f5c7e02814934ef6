# The MQTT session: connect over TLS with umqtt.simple, subscribe to the
# command topics, publish, and wait on the socket for what the broker sends.
import gc
import select
import sys
import time
from array import array

from micropython import const
import umqtt.simple
from umqtt.simple import MQTTClient

from node import feed, log, unload



_HUP = const(0x18)  # POLLHUP | POLLERR
_PINGRESP = const(0xD0)
_RECENT = const(8)  # QoS 1 packet ids remembered to spot a redelivery
# The longest command is 6 bytes ("toggle"): a longer message is read off in chunks of
# _PKT and dropped unallocated, so no publisher can make a node allocate its payload whole.
_CMD_MAX = const(64)
_TOPIC_MAX = const(128)  # ours are ctrlled and maison/<room>/led/set: a longer topic is not
_PKT = const(96)  # a reading's PUBLISH fits: larger ones (stats) get their own buffer
_DRAIN_MAX = const(32)  # packets handled per wait(): a flood of commands never holds the loop
_SOCKET_TIMEOUT_S = const(10)  # bounds connect, the TLS handshake and every wait for an answer
# axTLS, the ESP8266's TLS, allocates from the GC heap and crashes the chip (no MemoryError)
# when an allocation fails (ports/esp8266/posix_helpers.c). Its largest piece is its SSL
# struct, which holds the record buffer, RT_MAX_PLAIN_LENGTH 1024 + RT_EXTRA 4096
# (ports/esp8266/Makefile; lib/axtls/ssl/tls1.h struct _SSL): 5,316 bytes on a 32-bit build.
# Handshakes to the kit's broker (RSA 2048) on the 32-bit ESP8266-like build (README, "Memory
# per board"): crashed with 16.4 KB free, succeeded or crashed with 17.0 KB (fragmentation),
# succeeded with 17.6 KB. None is tried under the floor; above it, none is guaranteed.
_AXTLS = sys.platform == "esp8266"
_AXTLS_BLOCK = const(5316)
_AXTLS_FLOOR = const(16896)


def socket_timeout_s(keepalive_s, watchdog_ms):
    """How long any one socket operation may wait. No longer than a silent broker is
    tolerated (1.5 x keepalive), and short enough that the longest stretch the node cannot
    feed the watchdog, a TLS handshake (two waits), fits inside it with a second to spare
    for the CPU: 2 s on an ESP8266, whose watchdog is fixed at 5 s."""
    return max(1, min(_SOCKET_TIMEOUT_S, keepalive_s * 3 // 2, (watchdog_ms // 1000 - 1) // 2))


class _Net:
    """Stands in for umqtt.simple's `socket` module and for its TLS wrapper.

    socket(): every socket it makes gets a timeout before connect(), so no connect or TLS
    handshake can hang (umqtt 1.3 has no timeout argument; the socket is kept to re-arm it
    later, since umqtt's wait_msg() sets it back to blocking).
    wrap_socket(): what umqtt.simple calls to wrap its socket in TLS, `ussl.wrap_socket` in
    1.3 (we stand in for ussl, which MicroPython 1.22+ no longer has) and the SSLContext's
    `wrap_socket` in 1.4+. The handshake is the longest wait of a connect, so the watchdog
    is fed on both sides of it, and the timeout is set again first: umqtt.simple 1.5+ sets
    it back to blocking in connect() (settimeout(None))."""

    def __init__(self, real):
        self._real = real
        self.last = None
        self.timeout = _SOCKET_TIMEOUT_S
        self.tls = None  # ssl.wrap_socket's keyword arguments (node/tls.py wrap_params)

    def socket(self, *args):
        feed()  # a connect begins: name lookup, TCP, TLS and CONNACK each get their time
        s = self._real.socket(*args)
        s.settimeout(self.timeout)
        try:
            # An echo and its PUBACK are two small writes: without this the second waits
            # for the broker's delayed ACK (~40 ms, Nagle). 6, 1: IPPROTO_TCP, TCP_NODELAY.
            s.setsockopt(6, 1, 1)
        except (OSError, AttributeError):
            pass  # a port without the option: correct, only slower
        self.last = s
        return s

    def getaddrinfo(self, *args):
        feed()
        try:
            return self._real.getaddrinfo(*args)
        finally:
            feed()

    def wrap_socket(self, sock, server_hostname=None, **_):
        import ssl

        sock.settimeout(self.timeout)
        if _AXTLS:
            _tls_room()
        feed()
        s = ssl.wrap_socket(sock, **self.tls)
        feed()
        return s


def _tls_room():
    """Refuse a handshake axTLS cannot finish (it would crash the chip): a MemoryError
    instead, which the node counts, and a run of which ends in a controlled reset."""
    gc.collect()
    free = gc.mem_free() if hasattr(gc, "mem_free") else _AXTLS_FLOOR  # CPython has none
    if free < _AXTLS_FLOOR:
        raise MemoryError("%d bytes free, a TLS handshake needs about %d" % (free, _AXTLS_FLOOR))
    try:
        bytearray(_AXTLS_BLOCK)
    except MemoryError:
        raise MemoryError("no free block of %d bytes for the TLS handshake" % _AXTLS_BLOCK)
    gc.collect()  # that block is free again, for axTLS's SSL struct


_net = _Net(umqtt.simple.socket)
umqtt.simple.socket = _net


class _Client(MQTTClient):
    """umqtt.simple's client with its one incoming-message method changed: a QoS 1
    message the broker sends again (DUP set, same packet id: our PUBACK was lost)
    is acknowledged but not handed on twice, and every read after the first byte
    of a packet stays bounded by the socket timeout (umqtt sets it blocking)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.rearm = None  # set by Session: re-applies the socket timeout
        self.on_puback = None  # set by Session: a PUBACK for a message sent without waiting
        self._pkt = bytearray(_PKT)  # reused by every PUBLISH that fits
        self._recent = array("H", bytes(2 * _RECENT))  # packet ids of QoS 1 messages handed on
        self._next = 0

    def puback(self):
        """The packet id of the PUBACK whose first byte wait_msg() returned."""
        ack = self._read(3)
        if ack[0] != 2:
            raise OSError("malformed PUBACK from the broker")
        return ack[1] << 8 | ack[2]

    def _recv_len(self):
        # At most 4 bytes, as MQTT allows: an endless length must not keep us reading.
        n = 0
        for shift in (0, 7, 14, 21):
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
        raise OSError("malformed remaining length from the broker")

    def _read(self, n):
        # umqtt's read(n) returns what there is when the broker closes: half a message
        # must never be taken for a whole one.
        data = self.sock.read(n)
        if data is None or len(data) != n:
            raise OSError("connection closed by the broker in the middle of a packet")
        return data

    def _skip(self, n):
        # Read off n bytes into the reused packet buffer, never holding them whole.
        buf = self._pkt
        while n > 0:
            k = self.sock.readinto(buf, min(n, len(buf)))
            if not k:
                raise OSError("connection closed by the broker in the middle of a packet")
            n -= k

    def _seen(self, pid):
        for p in self._recent:  # (MicroPython's array has no `in`)
            if p == pid:
                return True
        return False

    def publish(self, topic, msg, retain=False, qos=0, wait=True):
        """The whole PUBLISH in one write: one TLS record and one TCP segment per reading,
        where umqtt.simple writes four (header, topic, packet id, payload). QoS 1 without
        `wait`: returns its packet id at once, and its PUBACK goes to on_puback."""
        n = 2 + len(topic) + len(msg) + (2 if qos else 0)
        buf = self._pkt if n + 5 <= len(self._pkt) else bytearray(n + 5)
        buf[0] = 0x30 | qos << 1 | retain
        i = 1
        while n > 0x7F:
            buf[i] = (n & 0x7F) | 0x80
            n >>= 7
            i += 1
        buf[i] = n
        i += 1
        n = len(topic)
        buf[i] = n >> 8
        buf[i + 1] = n & 0xFF
        buf[i + 2:i + 2 + n] = topic
        i += 2 + n
        if qos:
            # umqtt.simple 1.3 lets pid grow past 65535 (and fail): wrap it 1..65535.
            self.pid = pid = self.pid % 0xFFFF + 1
            buf[i] = pid >> 8
            buf[i + 1] = pid & 0xFF
            i += 2
        n = len(msg)
        buf[i:i + n] = msg
        self.sock.write(buf, i + n)
        if qos and not wait:
            return pid
        while qos:  # wait for the PUBACK; commands arriving meanwhile are applied
            op = self.wait_msg()
            if op == 0x40:
                got = self.puback()
                if got == pid:
                    return
                self.on_puback(got)  # the one sent without waiting
            elif op and op != _PINGRESP and op & 0xF0 != 0x30:
                raise OSError("unexpected packet 0x%02x from the broker" % op)

    def wait_msg(self):
        res = self.sock.read(1)
        self.sock.setblocking(True)
        if res is None:
            return None
        if res == b"":
            raise OSError(-1)
        self.rearm()
        if res == b"\xd0":  # PINGRESP
            self._read(1)
            return _PINGRESP
        op = res[0]
        if op & 0xF0 != 0x30:
            return op
        sz = self._recv_len()
        topic_len = self._read(2)
        topic_len = (topic_len[0] << 8) | topic_len[1]
        sz -= topic_len + 2
        if sz < 0:
            raise OSError("malformed PUBLISH from the broker (topic longer than the packet)")
        if op & 6 == 6:
            raise OSError("QoS 2 PUBLISH from the broker: not subscribed at QoS 2")
        topic = None
        if topic_len > _TOPIC_MAX:
            self._skip(topic_len)
        else:
            topic = self._read(topic_len)
        pid = 0
        if op & 6:
            pid = self._read(2)
            pid = pid[0] << 8 | pid[1]
            sz -= 2
        # Too long for a command: the app is told its length only (it counts and logs it).
        if sz > _CMD_MAX:
            self._skip(sz)
            msg = sz
        else:
            msg = self._read(sz) if sz > 0 else b""
        if op & 6 == 2:
            if topic is not None and not (op & 8 and self._seen(pid)):  # DUP, handed on: ack only
                self._recent[self._next] = pid
                self._next = (self._next + 1) % _RECENT
                self.cb(topic, msg, op & 1)
            # acknowledged even when dropped: the broker would hand it back at every reconnect
            self.sock.write(b"\x40\x02" + bytes((pid >> 8, pid & 0xFF)))
        elif topic is not None:
            self.cb(topic, msg, op & 1)  # (op & 1: retained, from the broker's store)
        return op


def describe(e, host, port):
    """One line saying why a connection failed, in the user's terms. The texts live in
    node/why.py, loaded for the occasion and dropped after: a running node rarely needs them."""
    try:
        from node import why
    except MemoryError:  # no room even to explain: the error's own words
        return repr(e)
    try:
        return why.link(e, host, port, _net.timeout)
    finally:
        unload("why")


class Session:
    def __init__(self, cfg, client_id, on_message, on_puback):
        m = cfg["mqtt"]
        self.host = m["host"]
        self.port = m["port"]
        self._keepalive_ms = m["keepalive"] * 1000
        _net.timeout = socket_timeout_s(m["keepalive"], cfg["watchdog_ms"])
        from node import topics  # loaded by app.Node, which drops it once built

        room = cfg["room"]
        self.t_status = (topics.STATUS % room).encode()
        self.subscriptions = (topics.COMMAND.encode(), (topics.LED_SET % room).encode())
        wrap = None
        if m["tls"]:
            from node import tls

            files = tls.load(m["tls"])
            if not tls.CAN_VERIFY:
                log("tls", "this board cannot verify certificates: encrypted, but the broker is NOT authenticated")
            # Every umqtt.simple version takes ssl=<an object with wrap_socket>: 1.3 only
            # tests it for truth and then imports ussl, which is the same object.
            _net.tls = tls.wrap_params(files, self.host)
            wrap = sys.modules["ussl"] = _net
            unload("tls")  # what it read stays in the wrapper's TLS parameters
            gc.collect()  # its place is free again: the node's long-lived buffers, made next, fill it
        else:
            log("mqtt", "WARNING: plaintext MQTT: password and readings cross the network in clear")
        # Bytes, not str: every umqtt.simple writes these lengths with len(), which counts a
        # str's characters while its UTF-8 bytes go out (a malformed CONNECT for "séjour").
        user, pw = m["user"], m["password"]  # None or non-empty (node/config.py)
        args = (client_id.encode(), self.host, self.port, user and user.encode(), pw and pw.encode(),
                m["keepalive"])
        self.client = _Client(*args, ssl=wrap)
        self._timeout_arg = True  # umqtt.simple 1.5+: connect(timeout=) (its default blocks)
        self.client.rearm = self._arm
        self.client.on_puback = self._puback
        self._on_puback = on_puback
        self.inflight = 0  # the packet id of the QoS 1 message sent without waiting, 0: none
        self._inflight_at = 0
        self.client.set_callback(on_message)
        self.client.set_last_will(self.t_status, b"offline", retain=True, qos=1)
        self.connected = False
        self._subscribed = False
        self._poll = None
        self._raw = None
        self._last_rx = self._last_tx = self._last_ping = 0

    def _arm(self):
        # umqtt's wait_msg() leaves the socket blocking: bound the next wait again.
        # (MicroPython's SSLSocket has no settimeout; its raw socket's timeout holds.)
        # Called as each packet starts to arrive and before each send: progress, so the
        # watchdog is fed and only one bounded wait lies before the next feed.
        feed()
        s = self.client.sock
        (s.settimeout if hasattr(s, "settimeout") else self._raw.settimeout)(_net.timeout)

    def connect(self):
        """Connect, subscribe if the broker kept no session, announce; raise on failure.

        The session is persistent (clean_session=False, QoS 1 subscriptions): the
        broker keeps commands sent while the node was away and hands them over
        on return. Subscribing only when it has no session for us also means a
        retained command is not applied again at every reconnect."""
        self.close()
        gc.collect()  # the TLS handshake needs the largest free block we can give it
        if self._timeout_arg:
            try:
                resumed = self.client.connect(False, _net.timeout)
            except TypeError:  # umqtt.simple 1.3/1.4: no timeout argument; _Net sets it
                self._timeout_arg = False
        if not self._timeout_arg:
            resumed = self.client.connect(False)
        self._raw = _net.last
        self.connected = True
        # A broker keeps the session even when a subscription failed or the link broke
        # half-way through them: subscribe again until all have been granted once.
        if not resumed or not self._subscribed:
            self._subscribed = False
            for t in self.subscriptions:
                self._arm()
                self.client.subscribe(t, 1)
            self._subscribed = True
        # Poll the plain socket under TLS: MicroPython's poll cannot sleep on a TLS socket
        # and spins (about 1000 wake-ups a second on the unix port); what TLS has already
        # decrypted is invisible there, so wait() drains it first.
        p = select.poll()
        try:
            p.register(self._raw, select.POLLIN)
        except ValueError:  # CPython's ssl took the plain socket's descriptor: poll the TLS one
            p.register(self.client.sock, select.POLLIN)
        self._poll = getattr(p, "ipoll", p.poll)
        self._last_rx = self._last_tx = self._last_ping = time.ticks_ms()
        self.publish(self.t_status, b"online", True)
        return resumed

    def publish(self, topic, msg, retain=False, qos=0, wait=True):
        """wait=False with QoS 1: sent, its PUBACK handed to on_puback when it comes (wait())."""
        self._arm()
        pid = self.client.publish(topic, msg, retain, qos, wait)
        self._last_tx = time.ticks_ms()
        if qos and not wait:
            self.inflight, self._inflight_at = pid, self._last_tx

    def _puback(self, pid):
        if pid == self.inflight:
            self.inflight = 0
            self._on_puback(pid)
        # else a late one for a message sent on an earlier connection: already sent again

    def wait(self, timeout_ms):
        """Wait up to timeout_ms for the broker; hand on any message at once."""
        now = time.ticks_ms()
        half = self._keepalive_ms // 2
        rx_idle = time.ticks_diff(now, self._last_rx)
        if rx_idle > self._keepalive_ms * 3 // 2:
            raise OSError("broker silent for more than 1.5 x keepalive")
        # A PUBACK may stand behind a flood of commands, so only a silence counts against it.
        if self.inflight and min(time.ticks_diff(now, self._inflight_at), rx_idle) > _net.timeout * 1000:
            raise OSError("no PUBACK from the broker within %d s" % _net.timeout)
        if ((rx_idle >= half or time.ticks_diff(now, self._last_tx) >= half)
                and time.ticks_diff(now, self._last_ping) >= half):
            self._arm()
            self.client.ping()  # the PINGRESP proves the broker is still there
            self._last_tx = self._last_ping = now
        if self._drain():
            return  # more is waiting: the loop comes round first (readings keep their slots)
        for _, ev in self._poll(max(0, min(timeout_ms, half // 2))):
            if ev & _HUP:
                raise OSError("connection closed by the broker")
            self._drain()

    def _drain(self):
        """Hand on the packets that have arrived, at most _DRAIN_MAX, without waiting for more.
        True when it stopped at that bound with more perhaps waiting."""
        for _ in range(_DRAIN_MAX):
            op = self.client.check_msg()  # raises OSError(-1) if the broker closed the socket
            if op is None:
                return False
            if op == 0x40:
                self._puback(self.client.puback())
            elif op != _PINGRESP and op & 0xF0 != 0x30:
                # Anything but a PUBLISH or PUBACK here leaves its body unread: the stream is lost.
                raise OSError("unexpected packet 0x%02x from the broker" % op)
            self._last_rx = time.ticks_ms()
        return True

    def close(self):
        if self.client.sock:
            try:
                self.client.sock.close()
            except OSError:
                pass
            self.client.sock = None
        # Nothing of the old connection stays referenced: once collected, the heap it held
        # is one piece again for the next TLS handshake.
        self._raw = self._poll = _net.last = None
        self.connected = False
        self.inflight = 0  # its reading is still in the backlog: sent again on the next connection
