"""The dashboard page over HTTPS, with the kit's server certificate (make broker HTTP_PORT=).

    python3 pageserver.py --www DIR --cert server.pem --key server.key --port 9080 [--bind ADDR]

Mosquitto 2.0.11 cannot serve it: its http_dir on a TLS WebSockets listener answers browsers
with an HTTP/2 protocol error (Chromium: ERR_HTTP2_PROTOCOL_ERROR). In clear, anyone on the LAN
can rewrite the page on its way and read the password typed into it. This serves the files of
one folder, read-only, over TLS 1.2+, with Python's standard library only (the Pi's own python3:
make broker-install copies this file and runs it as a systemd service).

What it serves: the regular files directly in DIR whose names are plain (letters, digits, '.',
'-', '_', not starting with '.'), opened without following a symbolic link. GET and HEAD only.
A browser that speaks plain HTTP to this port is sent to the https:// address.
"""
import argparse
import http.server
import os
import re
import socket
import ssl
import stat
import sys

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon", ".map": "application/json"}
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*$")
# The page loads only its own files and talks only to the broker's wss port; nothing may frame it.
HEADERS = {"Content-Security-Policy": "default-src 'self'; connect-src 'self' wss:; img-src 'self' data:; "
                                      "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
           "Strict-Transport-Security": "max-age=31536000"}
HANDSHAKE_S = 10  # a client that opens a connection and says nothing holds a thread this long at most


def read_file(www, path):
    """(bytes, content type) of the file a request path names, or None."""
    name = path.split("?", 1)[0].split("#", 1)[0]
    name = name[1:] if name.startswith("/") else name
    name = name or "index.html"
    if not _NAME.match(name) or os.path.splitext(name)[1] not in TYPES:
        return None
    try:
        fd = os.open(os.path.join(www, name), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(), TYPES[os.path.splitext(name)[1]]


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "maison-dashboard"
    sys_version = ""

    def do_GET(self, body=True):
        found = read_file(self.server.www, self.path)
        if found is None:
            return self._send(404, b"not found\n", "text/plain; charset=utf-8", body)
        self._send(200, found[0], found[1], body)

    def do_HEAD(self):
        self.do_GET(body=False)

    def _send(self, code, data, ctype, body=True):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("pageserver: %s %s\n" % (self.address_string(), fmt % args))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    redirect_host = "localhost"

    def __init__(self, addr, www, context):
        self.www = os.path.abspath(www)
        self.context = context
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)

    def finish_request(self, sock, addr):
        # In the request's own thread: a slow or silent client never holds the others.
        sock.settimeout(HANDSHAKE_S)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first and first != b"\x16":  # not a TLS ClientHello: a browser typed http://
            host = "%s:%d" % (self.redirect_host, self.server_address[1])
            sock.sendall(b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://" + host.encode() +
                         b"/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("pageserver: %s: TLS handshake failed: %s\n" % (addr[0], getattr(e, "reason", None) or e))
            return
        try:
            Handler(tls, addr, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        sys.stderr.write("pageserver: %s: %s\n" % (client_address[0], e))


def context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pageserver", description=__doc__.split("\n\n")[0])
    ap.add_argument("--www", required=True, help="the folder of the page's files")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="", help="the address to listen on (default: all)")
    ap.add_argument("--host", default="localhost", help="the name a plain-HTTP visitor is sent to")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.www):
        print("pageserver: %s: no such folder (make dashboard fills it)" % a.www, file=sys.stderr)
        return 1
    try:
        ctx = context(a.cert, a.key)
    except (OSError, ssl.SSLError) as e:
        print("pageserver: cannot load %s / %s: %s" % (a.cert, a.key, getattr(e, "strerror", None) or e),
              file=sys.stderr)
        return 1
    try:
        server = Server((a.bind, a.port), a.www, ctx)
    except OSError as e:
        print("pageserver: cannot listen on port %d: %s" % (a.port, e.strerror or e), file=sys.stderr)
        return 1
    server.redirect_host = "[%s]" % a.host if ":" in a.host else a.host
    print("pageserver: https://%s:%d/ serves %s" % (server.redirect_host, a.port, a.www), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
