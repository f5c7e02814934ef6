# Certificates from the config (PEM or DER) turned into what the board's
# ssl.wrap_socket wants: DER bytes, which both mbedTLS and axTLS accept.
import ssl
from binascii import a2b_base64

from node import log

# Ask the firmware's ssl rather than the chip: the ESP8266 port's (axTLS, extmod/modtls_axtls.c)
# has no CERT_REQUIRED because it cannot verify a certificate chain; mbedTLS ports (ESP32)
# have it, and so would an ESP8266 build made with mbedTLS.
CAN_VERIFY = hasattr(ssl, "CERT_REQUIRED")
_RSA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # 1.2.840.113549.1.1.1


def _der_length_ok(der):
    # A DER certificate or key is one SEQUENCE whose length covers the whole file.
    if len(der) < 4 or der[0] != 0x30:
        return False
    n = der[1]
    if n < 0x80:
        return 2 + n == len(der)
    k = n & 0x7F
    if k > 3:
        return False
    size = 0
    for b in der[2:2 + k]:
        size = size << 8 | b
    return 2 + k + size == len(der)


def _body(der, i):
    # Where the DER element at i has its content, and where it ends.
    n = der[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = 0
        for b in der[i:i + k]:
            n = n << 8 | b
        i += k
    return i, i + n


def rsa_pkcs1(der):
    """A PKCS#8 RSA key (what the kit and openssl write) as the PKCS#1 key inside it:
    axTLS reads only PKCS#1 (lib/axtls ssl/asn1.c asn1_get_private_key), mbedTLS reads both."""
    if _RSA_OID not in der[:32]:
        return der  # PKCS#1 already, or not RSA (axTLS then says "invalid key")
    i, _ = _body(der, 0)            # PrivateKeyInfo SEQUENCE
    i = _body(der, i)[1]            # version INTEGER
    i = _body(der, i)[1]            # AlgorithmIdentifier
    if der[i] != 0x04:              # privateKey OCTET STRING
        return der
    i, end = _body(der, i)
    return der[i:end]


def read_der(path, key, what):
    """Read a PEM or DER file named by config key `key`; return DER bytes."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise ValueError("config: %s: cannot read file %s" % (key, path))
    if b"-----BEGIN" in data:
        start = data.find(b"\n", data.find(b"-----BEGIN")) + 1
        end = data.find(b"-----END", start)
        try:
            data = a2b_base64(data[start:end].replace(b"\n", b"").replace(b"\r", b""))
        except ValueError:
            data = b""
    if not _der_length_ok(data):
        raise ValueError("config: %s: %s is not a valid %s (PEM or DER expected)" % (key, path, what))
    return data


def load(tls_cfg, base=""):
    """Read the files named in config mqtt.tls; paths are relative to the config file."""
    if base and not base.endswith("/"):
        base += "/"
    files = {"ca": read_der(base + tls_cfg["ca"], "mqtt.tls.ca", "certificate")}
    if tls_cfg["cert"]:
        files["cert"] = read_der(base + tls_cfg["cert"], "mqtt.tls.cert", "certificate")
        files["key"] = rsa_pkcs1(read_der(base + tls_cfg["key"], "mqtt.tls.key", "private key"))
    return files


def wrap_params(files, host):
    """Keyword arguments for ssl.wrap_socket: verify the broker by CA and host name."""
    p = {"server_hostname": host}
    if CAN_VERIFY:
        log("tls", "the broker is authenticated: its certificate must be signed by the configured CA and name '%s'", host)
        p["cert_reqs"] = ssl.CERT_REQUIRED
        p["cadata"] = files["ca"]
    if "cert" in files:
        p["cert"] = files["cert"]
        p["key"] = files["key"]
    return p

