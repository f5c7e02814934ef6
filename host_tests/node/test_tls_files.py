"""The certificate files a config names are read as PEM or DER, and nonsense is refused by key name.

Certificate files named in the config: PEM or DER in, DER out, nonsense refused by key name."""
import pytest

from nodekit.broker import certs
from node import tls


@pytest.fixture
def ca(tmp_path):
    key = certs.new_key()
    cert = certs.make_ca("Test CA", key)
    certs.write_cert(tmp_path / "ca.pem", cert)
    certs.write_cert(tmp_path / "ca.der", cert, der=True)
    certs.write_key(tmp_path / "client.key", key)
    certs.write_key_der(tmp_path / "client.key.der", key)
    return (tmp_path / "ca.der").read_bytes()


def test_pem_and_der_give_the_same_der(tmp_path, ca):
    assert tls.read_der(str(tmp_path / "ca.pem"), "mqtt.tls.ca", "certificate") == ca
    assert tls.read_der(str(tmp_path / "ca.der"), "mqtt.tls.ca", "certificate") == ca
    assert tls.read_der(str(tmp_path / "client.key"), "mqtt.tls.key", "private key") == \
        (tmp_path / "client.key.der").read_bytes()


def test_paths_are_relative_to_the_config(tmp_path, ca):
    files = tls.load({"ca": "ca.pem", "cert": "ca.der", "key": "client.key"}, str(tmp_path))
    assert files["ca"] == ca and set(files) == {"ca", "cert", "key"}


@pytest.mark.parametrize("content", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                                     b"0\x82\x01\x00truncated"])
def test_invalid_files_are_named(tmp_path, content):
    (tmp_path / "bad.der").write_bytes(content)
    with pytest.raises(ValueError) as e:
        tls.load({"ca": "bad.der", "cert": None, "key": None}, str(tmp_path))
    assert str(e.value) == "config: mqtt.tls.ca: %s/bad.der is not a valid certificate (PEM or DER expected)" % tmp_path


def test_truncated_der_is_refused(tmp_path, ca):
    (tmp_path / "cut.der").write_bytes(ca[:-10])
    with pytest.raises(ValueError, match="mqtt.tls.ca: .*cut.der is not a valid certificate"):
        tls.read_der(str(tmp_path / "cut.der"), "mqtt.tls.ca", "certificate")


def test_a_pkcs8_rsa_key_is_given_to_the_board_as_pkcs1(tmp_path, ca):
    # The kit writes PKCS#8; axTLS (ESP8266) reads PKCS#1 only (lib/axtls ssl/asn1.c).
    from cryptography.hazmat.primitives import serialization as s
    for key_type in ("rsa", "ec"):
        key = certs.new_key(key_type)
        certs.write_key(tmp_path / "client.key", key)
        files = tls.load({"ca": "ca.der", "cert": "ca.der", "key": "client.key"}, str(tmp_path))
        fmt = s.PrivateFormat.TraditionalOpenSSL if key_type == "rsa" else s.PrivateFormat.PKCS8
        assert files["key"] == key.private_bytes(s.Encoding.DER, fmt, s.NoEncryption()), key_type
