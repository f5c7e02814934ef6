# Why a link failed, in the user's terms: a line for the log. Loaded only when a failure
# must be told and dropped after (node.unload): a running node rarely needs these texts,
# and they are big for an ESP8266's heap.
import network
from umqtt.simple import MQTTException


def link(e, host, port, timeout_s):
    """Why a connection to the broker failed or broke (timeout_s: the socket's timeout)."""
    if isinstance(e, MQTTException):
        rc = e.args[0] if e.args else 0
        if rc == 0x80:  # umqtt raises the SUBACK failure code the same way
            return ("the broker refused a subscription (SUBACK 0x80): the account may not read "
                    "ctrlled or its maison/<room>/led/set topic")
        return "broker refused the connection: %s (CONNACK %s)" % (
            ("unacceptable protocol version", "client id rejected", "broker unavailable",
             "bad user name or password", "not authorised (wrong user name or password?)")[rc - 1]
            if 1 <= rc <= 5 else "code", rc)
    text = str(e)
    low = text.lower()
    if "verify" in low or "certificate" in low or "hostname" in low:
        # Imported here only: a running node drops its clock code once the clock is set
        # (app.py), and an import at the top would bring it back at every lost connection.
        from node import clock

        if not clock.is_set():
            return "cannot check the broker's certificate: the clock is not set (%s)" % text
        return ("broker's certificate not trusted: not signed by the configured CA, "
                "or '%s' not in it (%s)" % (host, text))
    errno = getattr(e, "errno", None) or (e.args[0] if e.args and type(e.args[0]) is int else None)
    if errno == -40:
        # axTLS (ESP8266) raises a server's fatal alert as -alert: 40 is handshake_failure,
        # which a broker sends when it has no cipher suite the board offers.
        return ("%s:%d refused the TLS handshake (alert 40): this board's axTLS speaks only RSA "
                "key exchange; give the broker an RSA key (the kit's default, not KEY_TYPE=ec)" % (host, port))
    if errno == -257:
        return ("a TLS record from the broker over this board's 5,120-byte buffer (axTLS "
                "RECORD_OVERFLOW): a message of about 5 KB or more was sent to it; the kit's "
                "max_packet_size keeps such messages out")
    if errno == 111 or "refused" in low:
        return "nothing accepts connections on %s:%d (broker down or wrong port?)" % (host, port)
    if errno in (-1, 32, 104) or "reset" in low or "broken pipe" in low:
        # umqtt raises OSError(-1) when the broker closes; 104 ECONNRESET, 32 EPIPE.
        return "connection closed by the broker (%s)" % ("closed" if errno == -1 else "reset")
    if isinstance(e, (AssertionError, IndexError)):
        # umqtt.simple checks the CONNACK with assert and indexing.
        return "the answer to CONNECT was truncated or malformed: is %s:%d an MQTT broker?" % (host, port)
    if errno in (110, 116) or "timed out" in low:
        return "no answer from %s:%d within %d s" % (host, port, timeout_s)
    if errno == -256:  # axTLS's SSL_ERROR_CONN_LOST: its reads failed (timed out or closed)
        return "the TLS handshake with %s:%d did not finish: no answer within %d s, or closed" % (
            host, port, timeout_s)
    if errno in (-2, -3, -202, -5):
        return "cannot resolve broker host name '%s'" % host
    return "connection to %s:%d failed: %s" % (host, port, text or repr(e))


def wifi(status):
    """What a Wi-Fi status means, or None when it tells no failure. The port's own STAT_*
    names: their values differ (ESP8266 0-5, ESP32 200s and 1000s)."""
    for name, text in (("STAT_WRONG_PASSWORD", "wrong Wi-Fi password"),
                       ("STAT_NO_AP_FOUND", "network not found"),
                       ("STAT_CONNECT_FAIL", "connection failed"),
                       ("STAT_NO_AP_FOUND_IN_RSSI_THRESHOLD", "network's signal too weak"),
                       ("STAT_NO_AP_FOUND_W_COMPATIBLE_SECURITY", "network's security not supported")):
        if status == getattr(network, name, None):
            return text
    return None
