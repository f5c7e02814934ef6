"""Check, from this PC, everything a node meets with its config.json (make doctor).

    python -m nodekit.doctor --config kit/nodes/salon/config.json

One line per check, in the order the node meets them: the config itself, the
broker's name, its port, TLS, the login, the topics, the keepalive, the broker's
version. Each line is `ok`, `warn` or `FAIL` with the cause and the fix. A
failure that makes the next checks meaningless (no name, no port, no TLS, no
login) stops there. Exit 0 when nothing failed, 1 otherwise. Secrets are never
printed.
"""
import argparse
import datetime
import ipaddress
import os
import secrets
import socket
import ssl
import struct
import sys
import tempfile
import time

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers
from paho.mqtt.reasoncodes import ReasonCode

from nodekit import rules
from nodekit.broker import certs
from nodekit.errors import Failure, report
# The node's own validation and names, so doctor and board say the same thing (rules puts
# the board's lib/ on sys.path; node.tls, like config, imports nothing of MicroPython's).
from nodekit.rules import homeassistant, node_config, reads, topics
from node import tls as node_tls  # noqa: E402  (after nodekit.rules)

TIMEOUT_S = 10  # for every connect, handshake and answer
EXPIRY_WARN_DAYS = 30
VERSION_TOPIC = "$SYS/broker/version"

# verify_code values of OpenSSL's X509_V_ERR_*.
_CA_MISMATCH = {2, 7, 18, 19, 20, 21}  # issuer unknown / self-signed in chain / bad signature
_NOT_YET_VALID, _EXPIRED = 9, 10
_NAME_MISMATCH = {62, 64}  # host name, IP address
_PROTOCOL_REFUSED = {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE",
                     "VERSION_TOO_LOW", "VERSION_TOO_HIGH"}
_CLIENT_CERT_REFUSED = {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                        "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_CERTIFICATE_REVOKED",
                        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED",
                        "TLSV1_ALERT_DECRYPT_ERROR", "TLSV13_ALERT_CERTIFICATE_REQUIRED"}
# MQTT 3.1.1 CONNACK codes, by the names paho 2 turns them into.
_CONNACK = {"Unsupported protocol version": (1, "unacceptable protocol version"),
            "Client identifier not valid": (2, "identifier rejected"),
            "Server unavailable": (3, "server unavailable"),
            "Bad user name or password": (4, "bad user name or password"),
            "Not authorized": (5, "not authorised")}


class Fail(Exception):
    """A check failed; the text says why and what to do."""


class Report:
    def __init__(self, out):
        self.out = out
        self.failed = self.warned = 0

    def line(self, status, check, text):
        print("%-4s  %s: %s" % (status, check, text), file=self.out, flush=True)

    def ok(self, check, text):
        self.line("ok", check, text)

    def warn(self, check, text):
        self.warned += 1
        self.line("warn", check, text)

    def fail(self, check, text):
        self.failed += 1
        self.line("FAIL", check, text)


# --- certificates -------------------------------------------------------------
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _day(t):
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _cn(name):
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return cns[0].value if cns else name.rfc4514_string()


def _names(cert):
    """The names a server certificate carries, as a client checks them."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName) + [str(i) for i in san.get_values_for_type(x509.IPAddress)]


def _pem_files(d, cert_der, key_der):
    # ssl.load_cert_chain takes PEM files only; the config may hold DER.
    try:
        key = serialization.load_der_private_key(key_der, None)
    except (ValueError, TypeError) as e:
        raise ValueError("not a private key this PC can read (%s)" % e)
    cert_path, key_path = os.path.join(d, "client.pem"), os.path.join(d, "client.key")
    with open(cert_path, "w") as f:
        f.write(ssl.DER_cert_to_PEM_cert(cert_der))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def make_context(files, verify=True, client=None):
    """A TLS client as the board is one: the config's CA, its client certificate, TLS 1.2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The boards speak TLS 1.2 at most (MicroPython 1.29's mbedTLS 3.6 fails against a
    # TLS 1.3-only server, seen here; axTLS on ESP8266 is older): prove that, not more.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.load_verify_locations(cadata=files["ca"])
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = client or (files.get("cert"), files.get("key"))
    if cert:
        with tempfile.TemporaryDirectory(prefix="doctor-") as d:
            ctx.load_cert_chain(*_pem_files(d, cert, key))
    return ctx


def _open(addr, ctx=None, host=None):
    """A socket connected to one getaddrinfo() address, over TLS if ctx is given."""
    family, _, _, _, sockaddr = addr
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect(sockaddr)
        return ctx.wrap_socket(s, server_hostname=host) if ctx else s
    except BaseException:
        s.close()
        raise


def _handshake(ctx, addr, host):
    """TLS handshake; return the broker's certificate (DER) and the TLS version."""
    with _open(addr, ctx, host) as t:
        return t.getpeercert(binary_form=True), t.version()


# --- 1. config ------------------------------------------------------------------
def check_config(r, path, platform):
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise Failure("cannot read %s: %s" % (path, e.strerror or e))
    try:
        cfg = node_config.load(path, platform)
        m = cfg["mqtt"]
        files = node_tls.load(m["tls"], base=os.path.dirname(path)) if m["tls"] else None
    except ValueError as e:
        raise Fail(str(e).replace("config: ", "", 1) + " (the node stops at boot with this)")
    ctx, ident = None, m["user"]
    if files:
        parsed = {}
        for key in ("ca", "cert"):
            try:
                if key in files:
                    parsed[key] = x509.load_der_x509_certificate(files[key])
            except ValueError as e:
                raise Fail("mqtt.tls.%s: %s is not a certificate (%s)" % (key, m["tls"][key], e))
        if "cert" in parsed and not ident:
            ident = _cn(parsed["cert"].subject)  # the user name under Mosquitto's use_identity_as_username
        try:
            ctx = make_context(files)
        except (ValueError, ssl.SSLError) as e:  # the certificates were read: the key is wrong
            raise Fail("mqtt.tls.key: %s does not go with %s: %s" % (m["tls"]["key"], m["tls"]["cert"], e))
    text = "%s: room %s, broker %s:%d" % (path, cfg["room"], m["host"], m["port"])
    if files:
        text += " over TLS (CA %s%s)" % (m["tls"]["ca"], ", client certificate %s" % m["tls"]["cert"]
                                        if m["tls"]["cert"] else "")
    r.ok("config", text + (", account '%s'" % ident if ident else ""))
    return cfg, files, ctx, ident


# --- 2. name, 3. port -------------------------------------------------------------
def check_mdns(r, host, platform):
    """An ESP8266 resolves by DNS only (no mDNS in ports/esp8266): a .local name that works
    on this PC never does on the board. The node logs the same line at start."""
    if platform == "esp8266" and host.lower().endswith(".local"):
        r.warn("name", "broker host '%s' cannot resolve on an ESP8266 (no mDNS): put the Pi's address "
               "in mqtt.host, e.g. 192.168.1.10" % host)


def check_name(r, host, port):
    try:
        addrs = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise Fail("cannot resolve '%s' (mqtt.host): %s: check the spelling; a .local name needs mDNS "
                   "on this network; or give the broker's IP address (its certificate must then carry it: "
                   "make broker BROKER_IPS=...)" % (host, e.strerror))
    r.ok("name", "%s -> %s" % (host, ", ".join(dict.fromkeys(a[4][0] for a in addrs))))
    return addrs


def check_port(r, host, port, addrs):
    errors = []
    for a in addrs:
        try:
            _open(a).close()
            r.ok("port", "%s:%d (%s) accepts connections" % (host, port, a[4][0]))
            return a
        except socket.timeout:
            errors.append(("timeout", a[4][0]))
        except ConnectionRefusedError:
            errors.append(("refused", a[4][0]))
        except OSError as e:
            errors.append((e.strerror or str(e), a[4][0]))
    kinds = {kind for kind, _ in errors}
    ips = ", ".join(ip for _, ip in errors)
    if "refused" in kinds:
        raise Fail("nothing listens on port %d of %s (%s): is Mosquitto running, is the port right? "
                   "(mqtt.port; its listener line in mosquitto.conf)" % (port, host, ips))
    if "timeout" in kinds:
        raise Fail("no answer from %s port %d (%s) within %d s: the host is off, or a firewall drops the "
                   "connection" % (host, port, ips, TIMEOUT_S))
    raise Fail("cannot reach %s port %d (%s): %s: is this PC on the broker's network?"
               % (host, port, ips, errors[0][0]))


# --- 4. TLS -------------------------------------------------------------------
def _peer_cert(files, addr, host):
    """The broker's certificate, fetched without checking it, to say what is wrong with it."""
    try:
        der, _ = _handshake(make_context(files, verify=False), addr, host)
        return x509.load_der_x509_certificate(der)
    except (OSError, ValueError):
        return None


def _verify_failure(e, cfg, files, addr):
    m = cfg["mqtt"]
    ca_file = m["tls"]["ca"]
    peer = _peer_cert(files, addr, m["host"])
    ca = x509.load_der_x509_certificate(files["ca"])
    now = _now()
    code = e.verify_code
    if code in _NAME_MISMATCH:
        names = ", ".join(_names(peer)) if peer else "?"
        try:
            ipaddress.ip_address(m["host"])
            add = "BROKER_IPS=%s" % m["host"]
        except ValueError:
            add = "BROKER_HOST=%s" % m["host"]
        return ("host name mismatch: the broker's certificate does not name '%s' (mqtt.host); it names: %s. "
                "Put one of those in mqtt.host, or add the name to the certificate (make broker %s "
                "re-issues it; then make broker-install)" % (m["host"], names or "nothing", add))
    if code in _CA_MISMATCH:
        if peer and peer.issuer == ca.subject:
            which = "two different CAs both named '%s': was the kit's CA made again?" % _cn(ca.subject)
        else:
            which = "it was issued by %s, the file holds '%s'" % (
                "'%s'" % _cn(peer.issuer) if peer else "another CA", _cn(ca.subject))
        return ("the broker's certificate is not signed by the CA in %s (%s): copy the CA of the broker's "
                "kit (nodes/<room>/ca.der, written by make node) next to config.json" % (ca_file, which))
    if code in (_EXPIRED, _NOT_YET_VALID):
        here = "it is %s on this PC" % _day(now)
        if peer and peer.not_valid_after_utc < now:
            return ("the broker's certificate expired on %s (%s): renew it with make broker RENEW=1, "
                    "then make broker-install" % (_day(peer.not_valid_after_utc), here))
        if peer and peer.not_valid_before_utc > now:
            return ("the broker's certificate is valid only from %s (%s): is this PC's clock right? (a board "
                    "checks dates too once NTP has set its clock)" % (_day(peer.not_valid_before_utc), here))
        if ca.not_valid_after_utc < now:
            return ("the CA in %s expired on %s (%s): make a new one with make broker NEW_CA=1, then make "
                    "broker-install and give every node the new ca.der"
                    % (ca_file, _day(ca.not_valid_after_utc), here))
        if ca.not_valid_before_utc > now:
            return ("the CA in %s is valid only from %s (%s): is this PC's clock right?"
                    % (ca_file, _day(ca.not_valid_before_utc), here))
    return "the broker's certificate is not accepted: %s (OpenSSL error %d)" % (e.verify_message, code)


def _wants_client_cert(files, addr, host):
    """Did the handshake fail for want of a client certificate? Offer a throwaway one:
    a broker that asks for one then refuses it as unknown (TLS 1.2 says only
    'handshake failure' when a client gives none)."""
    key = certs.new_key("ec")
    cert = certs.make_ca("nodekit doctor probe", key, days=1)
    der = (cert.public_bytes(serialization.Encoding.DER),
           key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()))
    try:
        _handshake(make_context(files, verify=False, client=der), addr, host)
    except ssl.SSLError as e:
        return e.reason in _CLIENT_CERT_REFUSED
    except OSError:
        pass
    return False


def _tls_failure(e, cfg, files, addr):
    m = cfg["mqtt"]
    reason = getattr(e, "reason", None) or ""
    cert = m["tls"]["cert"]
    if reason in _PROTOCOL_REFUSED:
        return ("the broker refuses TLS 1.2, the newest version the boards speak (%s): allow it in "
                "mosquitto.conf (tls_version tlsv1.2)" % reason)
    if cert and reason in _CLIENT_CERT_REFUSED:
        why = {"TLSV1_ALERT_UNKNOWN_CA": "it is not signed by the CA the broker trusts (cafile in mosquitto.conf)",
               "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it has expired (valid until %s)" % _day(
                   x509.load_der_x509_certificate(files["cert"]).not_valid_after_utc)}.get(reason, reason)
        return ("the broker refused the client certificate %s: %s: issue a new one (delete the kit's "
                "nodes/%s/client.der, then make node ROOM=%s)" % (cert, why, cfg["room"], cfg["room"]))
    if not cert and reason in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "TLSV13_ALERT_CERTIFICATE_REQUIRED") \
            and _wants_client_cert(files, addr, m["host"]):
        return ("the broker requires a client certificate (require_certificate true) and mqtt.tls gives none: "
                "add \"cert\" and \"key\" to mqtt.tls (make broker CLIENT_CERTS=1, then make node ROOM=%s "
                "writes client.der and client.key.der)" % cfg["room"])
    if isinstance(e, (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError)) or reason == "WRONG_VERSION_NUMBER":
        return ("port %d closed the connection during the TLS handshake: is it a TLS listener? (a plain MQTT "
                "port such as 1883 does this: set mqtt.port to the TLS one, 8883 in the kit)" % m["port"])
    return "TLS handshake with %s:%d failed: %s" % (m["host"], m["port"], e)


def check_tls(r, cfg, files, ctx, addr):
    m = cfg["mqtt"]
    if not files:
        r.warn("tls", "off (mqtt.tls is false): the password and the readings cross the network in clear")
        return
    try:
        der, version = _handshake(ctx, addr, m["host"])
    except ssl.SSLCertVerificationError as e:
        raise Fail(_verify_failure(e, cfg, files, addr))
    except socket.timeout:
        raise Fail("%s:%d accepted the connection but did not finish the TLS handshake within %d s"
                   % (m["host"], m["port"], TIMEOUT_S))
    except OSError as e:  # ssl.SSLError is one
        raise Fail(_tls_failure(e, cfg, files, addr))
    peer = x509.load_der_x509_certificate(der)
    until = peer.not_valid_after_utc
    r.ok("tls", "%s, certificate for %s signed by the CA in %s, valid until %s"
         % (version, ", ".join(_names(peer)) or _cn(peer.subject), m["tls"]["ca"], _day(until)))
    days = (until - _now()).days
    if days < EXPIRY_WARN_DAYS:
        r.warn("tls", "the broker's certificate expires in %d days (%s): renew it now with make broker "
               "RENEW=1, then make broker-install" % (days, _day(until)))


# --- 5. login ---------------------------------------------------------------------
def _client_id(cfg, tag):
    # Not the node's own id (a broker that takes ids as given would throw the running node off).
    # The kit's broker makes every id on the nodes' port its account's name: there the doctor's
    # sessions are the node's own, so they resume it (never clean it) and acknowledge nothing.
    return "doctor-%s-%s-%s" % (cfg["room"], tag, secrets.token_hex(3))


def _forget_session(m, ctx, client_id):
    """A session the doctor's login made (not the node's, which it would have resumed): dropped,
    by a clean login with the same id, so no run leaves one behind."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
                    clean_session=True)
    if ctx:
        c.tls_set_context(ctx)
    if m["user"]:
        c.username_pw_set(m["user"], m["password"])
    try:
        c.connect(m["host"], m["port"], keepalive=m["keepalive"])
        c.loop(TIMEOUT_S)
        c.disconnect()
    except OSError:
        pass  # the first login worked: nothing here is the node's problem
    finally:
        if c.socket():
            c.socket().close()


def check_login(r, cfg, ctx, ident):
    """Log in exactly as the node does (MQTT 3.1.1, its account, its keepalive);
    return the CONNACK code."""
    m = cfg["mqtt"]
    answers = []
    # clean_session False and manual_ack: commands queued for the node stay queued for it.
    cid = _client_id(cfg, "login")
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid,
                    protocol=paho.MQTTv311, clean_session=False, manual_ack=True)
    if ctx:
        c.tls_set_context(ctx)
    if m["user"]:
        c.username_pw_set(m["user"], m["password"])
    present = []
    c.on_connect = lambda client, userdata, flags, rc, props: (answers.append(rc), present.append(flags.session_present))
    try:
        c.connect(m["host"], m["port"], keepalive=m["keepalive"])
        deadline = time.monotonic() + TIMEOUT_S
        while not answers and time.monotonic() < deadline:
            if c.loop(0.2) != paho.MQTT_ERR_SUCCESS:
                break
    except OSError as e:
        raise Fail("the connection failed during the login: %s" % e)
    finally:
        if answers and not answers[0].is_failure:
            c.disconnect()
        if c.socket():
            c.socket().close()
    if answers and not answers[0].is_failure and not present[0]:
        _forget_session(m, ctx, cid)
    who = "account '%s'" % ident if ident else "anonymous login"
    if not answers:
        raise Fail("the broker closed the connection without answering the login (see its log)")
    rc = answers[0]
    if not rc.is_failure:
        r.ok("login", "%s accepted (MQTT 3.1.1 as the node, CONNACK 0)" % who)
        return 0
    code, meaning = _CONNACK.get(rc.getName(), (rc.value, rc.getName()))
    fix = {5: "Mosquitto says this for a wrong user name or password: mqtt.user/mqtt.password must match "
              "the broker's passwd file (make node ROOM=%s writes both; reload Mosquitto after changing it)"
              % cfg["room"],
           4: "check mqtt.user and mqtt.password",
           3: "the broker takes no clients now: see its log",
           2: "Mosquitto 2.0.12+ says this when mqtt.keepalive (%d s) is above its max_keepalive: "
              "see the keepalive line" % m["keepalive"],
           1: "the broker does not speak MQTT 3.1.1, the node's protocol"}.get(code, "see the broker's log")
    r.fail("login", "the broker refused %s: %s (CONNACK %d): %s" % (who, meaning, code, fix))
    return code


# --- 6-8. the MQTT v5 probe ---------------------------------------------------------
class Probe5:
    """Just enough MQTT v5 to see the broker's answers that MQTT 3.1.1 hides.

    Mosquitto answers a refused 3.1.1 PUBLISH as if accepted; in v5 its PUBACK or
    PUBREC says 0x87 Not authorized (seen with 2.0.11). A QoS 2 PUBLISH that is
    never released (no PUBREL) is checked and answered, and never reaches a
    subscriber. paho cannot do
    that: it ignores PUBREC's reason code and always answers PUBREL."""

    def __init__(self, sock):
        self.sock = sock
        self.mid = 0
        self.resumed = True  # until a CONNACK says the session is new
        self.received = []  # (topic, payload) of the messages the broker sent us

    def _send(self, first, body):
        self.sock.sendall(bytes([first]) + VariableByteIntegers.encode(len(body)) + body)

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def _packet(self):
        first = self._read(1)[0]
        size, shift = 0, 0
        while True:
            b = self._read(1)[0]
            size |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        return first, self._read(size)

    def _wait(self, kind):
        """Read packets until one of type `kind`; keep the messages met on the way."""
        while True:
            first, body = self._packet()
            if first >> 4 == kind:
                return body
            if first >> 4 == 3:
                self._message(first, body)
            elif first >> 4 == 14:
                raise ConnectionError("the broker ended the session: %s"
                                      % ReasonCode(PacketTypes.DISCONNECT, identifier=body[0] if body else 0))

    def _message(self, first, body):
        n = struct.unpack("!H", body[:2])[0]
        topic, i = body[2:2 + n].decode("utf-8", "replace"), 2 + n
        if (first >> 1) & 3:
            i += 2  # no PUBACK: in the node's own session this may be a command queued for it
        _, plen = Properties(PacketTypes.PUBLISH).unpack(body[i:])
        self.received.append((topic, body[i + plen:]))

    def _mid(self):
        self.mid += 1
        return struct.pack("!H", self.mid)

    @staticmethod
    def _str(text):
        b = text.encode()
        return struct.pack("!H", len(b)) + b

    def connect(self, client_id, user, password, keepalive):
        """CONNECT resuming the session and keeping it (Session Expiry Interval: never), as the node's
        own 3.1.1 session is kept; return (reason code, CONNACK properties)."""
        flags = (0x80 if user else 0) | (0x40 if password else 0)
        body = (self._str("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive)
                + b"\x05\x11\xff\xff\xff\xff" + self._str(client_id))
        body += (self._str(user) if user else b"") + (self._str(password) if password else b"")
        self._send(0x10, body)
        body = self._wait(2)
        self.resumed = bool(body[0] & 1)
        props = Properties(PacketTypes.CONNACK)
        if len(body) > 2:
            props.unpack(body[2:])
        return body[1], props

    def publish_unreleased(self, topic):
        """QoS 2 PUBLISH, never released; return the PUBREC reason code."""
        mid = self._mid()
        self._send(0x34, self._str(topic) + mid + b"\x00" + b"nodekit doctor probe")
        body = self._wait(5)
        return body[2] if len(body) > 2 else 0

    def subscribe(self, names, qos=1):
        """SUBSCRIBE; return one reason code per topic (0-2: the QoS granted)."""
        self._send(0x82, self._mid() + b"\x00" + b"".join(self._str(t) + bytes([qos]) for t in names))
        body = self._wait(9)
        _, plen = Properties(PacketTypes.SUBACK).unpack(body[2:])
        return list(body[2 + plen:])

    def unsubscribe(self, names):
        self._send(0xA2, self._mid() + b"\x00" + b"".join(self._str(t) for t in names))
        self._wait(11)

    def drain(self):
        """Collect the retained messages the subscriptions brought: the broker sends
        them before it answers a PINGREQ sent after the SUBSCRIBE."""
        self._send(0xC0, b"")
        self._wait(13)

    def disconnect(self):
        try:
            # A session this probe made is dropped (Session Expiry Interval 0); the node's is kept.
            self._send(0xE0, b"" if self.resumed else b"\x00\x05\x11\x00\x00\x00\x00")
        except OSError:
            pass  # the broker has gone already
        finally:
            self.sock.close()


def _code(kind, code):
    return "0x%02X %s" % (code, ReasonCode(kind, identifier=code).getName())


def run_probe(cfg, ctx, addr):
    """One MQTT v5 session with the node's account: what the broker allows it."""
    m = cfg["mqtt"]
    room = cfg["room"]
    p = Probe5(_open(addr, ctx, m["host"]))
    try:
        rc, props = p.connect(_client_id(cfg, "v5"), m["user"], m["password"], m["keepalive"])
        res = {"connack": rc, "server_keepalive": getattr(props, "ServerKeepAlive", None)}
        if rc:
            return res
        # The topics the node writes and reads (lib/node/topics.py).
        dht = cfg["sensor"]["type"][:3] == "dht"  # a DHT's humidity (node/app.py t_second)
        writes = [t % room for t in (topics.VALUE, topics.STATUS, topics.LED)
                  + ((topics.SECOND,) if dht else ())]
        if cfg["homeassistant"]:  # the discovery topics, named by the node's own code
            writes += homeassistant.config_topics(room, dht)
        res["publish"] = [(t, p.publish_unreleased(t)) for t in writes]
        subs = list(reads(room)) + [VERSION_TOPIC]
        res["subscribe"] = list(zip(subs, p.subscribe(subs)))
        p.drain()
        p.unsubscribe([VERSION_TOPIC])  # the node's subscriptions are its own; this one is the probe's
        res["received"] = dict(p.received)
        return res
    finally:
        p.disconnect()


def report_probe(r, cfg, ident, res, login_rc):
    m = cfg["mqtt"]
    room = cfg["room"]
    who = "'%s'" % ident if ident else "the anonymous login"
    if res["connack"]:
        r.fail("probe", "the broker refused the MQTT v5 login that checks topics: %s: publish, subscribe and "
               "keepalive not checked" % _code(PacketTypes.CONNACK, res["connack"]))
        return
    denied = [(t, c) for t, c in res["publish"] if c >= 0x80]
    if denied:
        # The kit's acl lines that allow them (nodekit/broker/kit.py render_acl: each topic exactly).
        need = dict.fromkeys(t for t, _ in denied)
        r.fail("publish", "the broker refuses %s publishing on %s (PUBREC %s): the node's messages there would "
               "vanish without an error (MQTT 3.1.1 acknowledges them anyway); its acl needs `topic write "
               "%s` under `user %s`, then reload Mosquitto"
               % (who, ", ".join(t for t, _ in denied), _code(PacketTypes.PUBREC, denied[0][1]),
                  "` and `topic write ".join(need), ident or "..."))
    else:
        r.ok("publish", "%s may publish on %s (MQTT v5 PUBREC; the QoS 2 probes were never released, so no "
             "subscriber saw them)" % (who, ", ".join(t for t, _ in res["publish"])))

    subs = res["subscribe"]
    version = subs.pop()[1]
    refused = [(t, c) for t, c in subs if c >= 0x80]
    if refused:
        r.fail("subscribe", "the broker refuses %s a subscription to %s (SUBACK %s): commands would never "
               "reach the node; its acl needs `topic read %s` under "
               "`user %s`" % (who, ", ".join(t for t, _ in refused), _code(PacketTypes.SUBACK, refused[0][1]),
                              "` and `topic read ".join(reads(room)), ident or "..."))
    else:
        # Mosquitto 2.0's acl_file grants every SUBSCRIBE (v5 SUBACK included) and checks
        # read permission only when a message is delivered; the node's account may not
        # publish on the command topics, and doctor must not (a probe there would switch
        # real LEDs). So only a retained message there proves read permission.
        proved = [t for t, _ in subs if t in res["received"]]
        text = "%s may subscribe to %s (SUBACK QoS %s)" % (
            who, ", ".join(t for t, _ in subs), "/".join(str(c) for c in dict.fromkeys(c for _, c in subs)))
        if proved:
            text += "; reading proved by the retained message on %s" % ", ".join(proved)
        unproved = [t for t, _ in subs if t not in proved]
        if unproved:
            text += ("; %s: Mosquitto checks read permission only when a command comes and doctor sends "
                     "none, so a command switching the LED is the last proof" % ", ".join(unproved))
        if any(c < 1 for _, c in subs):
            r.warn("subscribe", text + ": QoS 0 only (max_qos?): commands sent while the node is away are lost")
        else:
            r.ok("subscribe", text)

    ka, server_ka = m["keepalive"], res["server_keepalive"]
    if server_ka is None or server_ka >= ka:
        r.ok("keepalive", "%d s accepted (mqtt.keepalive; MQTT v5 CONNACK asked for no lower value)" % ka)
    else:
        text = ("the broker allows at most %d s (max_keepalive) and mqtt.keepalive is %d s" % (server_ka, ka))
        if login_rc == 2:
            r.fail("keepalive", text + ": it refuses the node's MQTT 3.1.1 login for that ('identifier "
                   "rejected'): set mqtt.keepalive to %d or less" % server_ka)
        else:
            r.warn("keepalive", text + ": this broker lets an MQTT 3.1.1 node keep it (Mosquitto 2.0.11 "
                   "applies max_keepalive to MQTT v5 only) but 2.0.12 and later refuse it ('identifier "
                   "rejected'): set mqtt.keepalive to %d or less" % server_ka)

    payload = res["received"].get(VERSION_TOPIC)
    if payload is not None:
        r.ok("broker", payload.decode("utf-8", "replace"))
    else:
        r.warn("broker", "no answer on %s for %s (SUBACK %s): give everyone read access to it in the acl "
               "(`pattern read %s`, as the kit does) to see the version here"
               % (VERSION_TOPIC, who, _code(PacketTypes.SUBACK, version), VERSION_TOPIC))


# --- ntp --------------------------------------------------------------------------------
NTP_TIMEOUT_S = 1  # the node's (lib/node/clock.py): one query, within the ESP8266's 5 s watchdog


def check_ntp(r, cfg, platform, port=123):
    """The node's time server (ntp.host, by default the broker's host) answers one real NTP
    query within the node's timeout. An ESP32 checks the broker's certificate dates, so after
    a power cut it connects only once this answers; an ESP8266 (axTLS) checks no dates."""
    if not cfg["ntp"] or not cfg["mqtt"]["tls"]:
        return  # the node never asks (lib/node/app.py)
    host = cfg["ntp"]["host"]
    say = r.fail if platform != "esp8266" else r.warn
    why = ("after a power cut the node cannot check the broker's certificate (its clock reads 2000) "
           "until it does" if platform != "esp8266" else
           "after a power cut the node's clock stays unset (reads 2000; its TLS checks no dates)")
    fix = ("on the Pi: make broker-install (it makes chrony serve time to the LAN; without chrony: "
           "sudo apt install chrony, then install again), or set ntp.host to a server that answers")
    try:
        addr = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    except socket.gaierror as e:
        say("ntp", "cannot resolve '%s' (ntp.host): %s: %s" % (host, e.strerror, why))
        return
    query = b"\x1b" + bytes(47)  # NTP version 3, client
    sent = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(NTP_TIMEOUT_S)
        try:
            s.sendto(query, addr)
            reply = s.recv(48)
        except OSError:
            reply = b""
    if len(reply) < 48 or reply[1] == 0 or reply[0] & 7 != 4:
        what = "no NTP answer" if not reply else "no usable NTP answer (kiss-o'-death or not a server reply)"
        say("ntp", "%s from %s (UDP %d) within %d s: %s; %s" % (what, host, port, NTP_TIMEOUT_S, why, fix))
        return
    secs, frac = struct.unpack("!II", reply[40:48])
    offset = secs - 2208988800 + frac / 2 ** 32 - (sent + time.time()) / 2
    r.ok("ntp", "%s answers NTP (stratum %d), its clock %+.1f s from this PC's" % (host, reply[1], offset))


# --- the whole visit ------------------------------------------------------------------
def doctor(path, out=None):
    """Run the checks in order, one line each on out; return the Report."""
    r = Report(out or sys.stdout)
    step = "config"
    try:
        platform = rules.platform_of(path)
        cfg, files, ctx, ident = check_config(r, path, platform)
        m = cfg["mqtt"]
        step = "name"
        check_mdns(r, m["host"], platform)
        addrs = check_name(r, m["host"], m["port"])
        step = "port"
        addr = check_port(r, m["host"], m["port"], addrs)
        step = "tls"
        check_tls(r, cfg, files, ctx, addr)
        step = "login"
        login_rc = check_login(r, cfg, ctx, ident)
        if login_rc not in (0, 2):  # 2 may be the keepalive: the probe tells
            return r
        step = "probe"
        try:
            res = run_probe(cfg, ctx, addr)
        except OSError as e:
            raise Fail("the MQTT v5 session that checks topics failed: %s" % e)
        report_probe(r, cfg, ident, res, login_rc)
        check_ntp(r, cfg, platform)
    except Fail as e:
        r.fail(step, str(e))
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(prog="doctor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="the node's config.json")
    a = ap.parse_args(argv)
    try:
        r = doctor(a.config)
    except (Failure, OSError) as e:
        return report("make doctor", e)
    except KeyboardInterrupt:
        print("doctor: interrupted", file=sys.stderr)
        return 1
    if r.failed:
        print("doctor: %d check%s failed" % (r.failed, "s" if r.failed > 1 else ""))
    else:
        print("doctor: all checks passed%s" % (", %d warning%s" % (r.warned, "s" if r.warned > 1 else "")
                                              if r.warned else ""))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
