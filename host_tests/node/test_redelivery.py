"""A command the broker delivers twice switches the LED once.

A QoS 1 command the broker delivers twice (DUP set, same packet id: the node's
PUBACK was lost) is applied once. Real brokers do this only after a lost
acknowledgement, so a minimal scripted MQTT server plays the broker here."""
import json
import socket
import struct
import threading
import time


def _read_packet(conn):
    head = conn.recv(1)
    if not head:
        return None, None
    n, shift = 0, 0
    while True:
        b = conn.recv(1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            return None, None
        body += chunk
    return head[0], body


class ScriptedBroker:
    """Answers CONNECT, SUBSCRIBE, QoS 1 PUBLISH and PINGREQ like a broker; sends what it is told."""

    def __init__(self):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.subscribed = threading.Event()
        self.pubacks = []
        self.conn = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.conn, _ = self.srv.accept()
        while True:
            try:
                op, body = _read_packet(self.conn)
            except OSError:
                return
            if op is None:
                return
            kind = op & 0xF0
            if kind == 0x10:
                self.conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, no session: the node subscribes
            elif kind == 0x80:
                self.conn.sendall(b"\x90\x03" + body[:2] + b"\x01")
                if b"led/set" in body:
                    self.subscribed.set()
            elif kind == 0x30 and op & 0x06:
                tlen = struct.unpack(">H", body[:2])[0]
                self.conn.sendall(b"\x40\x02" + body[2 + tlen:4 + tlen])
            elif kind == 0xC0:
                self.conn.sendall(b"\xd0\x00")
            elif kind == 0x40:
                self.pubacks.append(struct.unpack(">H", body)[0])

    def publish(self, topic, payload, pid, dup=False):
        t = topic.encode()
        body = struct.pack(">H", len(t)) + t + struct.pack(">H", pid) + payload
        self.conn.sendall(bytes([0x32 | (0x08 if dup else 0), len(body)]) + body)

    def close(self):
        if self.conn:
            self.conn.close()
        self.srv.close()


def test_duplicate_qos1_command_is_applied_once(tmp_path, start_node, runtime):
    b = ScriptedBroker()
    try:
        cfg = tmp_path / "node" / "config.json"
        cfg.parent.mkdir()
        cfg.write_text(json.dumps({
            "room": "salon", "wifi": {"ssid": "maison", "password": "pw"},
            "mqtt": {"host": "127.0.0.1", "port": b.port, "user": "salon", "password": "x", "tls": False},
            "period_s": 60, "sensor": {"type": "sim"}}))
        node = start_node(cfg, runtime)
        assert b.subscribed.wait(20), node.log()
        b.publish("maison/salon/led/set", b"toggle", pid=7)
        b.publish("maison/salon/led/set", b"toggle", pid=7, dup=True)  # the same message, again
        b.publish("maison/salon/led/set", b"toggle", pid=8)            # a new one: applied
        b.publish("maison/salon/led/set", b"toggle", pid=9)
        deadline = time.monotonic() + 15
        while b.pubacks.count(9) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(b.pubacks) == [7, 7, 8, 9]  # every delivery is acknowledged
        assert node.log().count("led   on (maison/salon/led/set)") == 2
        assert node.log().count("led   off (maison/salon/led/set)") == 1
        assert node.led_on() is True  # three toggles, not four
    finally:
        b.close()
