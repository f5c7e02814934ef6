"""MicroPython's ssl.wrap_socket() signature over CPython's ssl module.

Certificates and keys arrive as DER bytes, as on a board; CPython's
load_cert_chain wants files, so the client pair goes through a private
temporary folder that is removed at once.
"""
import os
import ssl as _ssl
import tempfile

from usocket import Stream

CERT_NONE = _ssl.CERT_NONE
CERT_OPTIONAL = _ssl.CERT_OPTIONAL
CERT_REQUIRED = _ssl.CERT_REQUIRED


def _key_pem(der):
    # Any DER key a board takes (PKCS#1, SEC1, PKCS#8) as the PEM CPython wants.
    from cryptography.hazmat.primitives import serialization as s
    key = s.load_der_private_key(der, None)
    return key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE,
                cadata=None, server_hostname=None, do_handshake=True):
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = cert_reqs == CERT_REQUIRED and bool(server_hostname)
    ctx.verify_mode = cert_reqs
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    if cert:
        with tempfile.TemporaryDirectory() as d:
            cpath, kpath = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            with open(cpath, "w") as f:
                f.write(_ssl.DER_cert_to_PEM_cert(cert))
            with open(os.open(kpath, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(_key_pem(key))
            ctx.load_cert_chain(cpath, kpath)
    raw = sock._s if isinstance(sock, Stream) else sock
    return Stream(ctx.wrap_socket(raw, server_hostname=server_hostname,
                                  do_handshake_on_connect=do_handshake))
