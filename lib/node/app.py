# The node's main loop: a reading every period on a fixed grid, commands
# applied the moment they arrive, reconnection when the link breaks.
import sys
import time
from binascii import hexlify

import machine

from node import __version__, clock, commands, config, sensor, wifi
from node.led import Led
from node.log import log
from node.session import Session, backoff_ms, describe


def client_id(cfg):
    # Stable across reboots: the room plus the chip's own id.
    return cfg["mqtt"]["client_id"] or "%s-%s" % (cfg["room"], hexlify(machine.unique_id()).decode())


class Node:
    def __init__(self, cfg):
        self.cfg = cfg
        room = cfg["room"]
        self.t_value = ("maison/%s/valeur" % room).encode()
        self.t_led = ("maison/%s/led" % room).encode()
        self.led = Led(cfg["led"]["pin"], cfg["led"]["active_low"])
        self.sensor = sensor.make(cfg["sensor"])
        self.client_id = client_id(cfg)
        self.session = Session(cfg, self.client_id, self.on_message)

    # --- commands: ctrlled and maison/<room>/led/set -------------------------
    def on_message(self, topic, msg):
        cmd = commands.parse(msg)
        if cmd is None:
            log("cmd", "ignored %d bytes on %s: expected 1/0, on/off, true/false or toggle",
                len(msg), topic.decode())
            return
        on = not self.led.on if cmd == commands.TOGGLE else cmd == commands.ON
        self.led.set(on)
        log("led", "%s (%s)", "on" if on else "off", topic.decode())
        self.publish_led()

    def publish_led(self):
        self.session.publish(self.t_led, b"1" if self.led.on else b"0", True)

    # --- readings -------------------------------------------------------------
    def report(self):
        value = self.sensor.read()
        text = ("%d" if type(value) is int else "%.2f") % value
        if not self.session.connected:
            log("read", "%s not sent: not connected", text)
            return
        self.session.publish(self.t_value, text.encode())
        log("read", "%s -> %s", text, self.t_value.decode())

    # --- connection -------------------------------------------------------------
    def try_connect(self):
        s = self.session
        try:
            s.connect()
            log("mqtt", "connected to %s:%d as %s", s.host, s.port, self.client_id)
            self.publish_led()
            return True
        except Exception as e:  # any failure of the link or the broker: say why, retry later
            s.close()
            log("mqtt", "%s", describe(e, s.host, s.port))
            return False

    def run(self):
        period = self.cfg["period_ms"]
        attempt = 0
        retry_at = time.ticks_ms()
        t_next = None  # the grid starts after the first connection attempt
        while True:
            now = time.ticks_ms()
            if not self.session.connected and time.ticks_diff(now, retry_at) >= 0:
                if self.try_connect():
                    attempt = 0
                else:
                    delay = backoff_ms(attempt)
                    attempt += 1
                    retry_at = time.ticks_add(time.ticks_ms(), delay)
                    log("mqtt", "next attempt in %d.%d s", delay // 1000, delay % 1000 // 100)
                if t_next is None:
                    t_next = time.ticks_ms()
                now = time.ticks_ms()
            due = time.ticks_diff(t_next, now)
            if due <= 0:
                self.report()
                # Next slot on the grid t0 + k*period; slots missed in a stall are skipped.
                t_next = time.ticks_add(t_next, period * (1 + (-due) // period))
                continue
            if self.session.connected:
                try:
                    self.session.wait(due)
                except Exception as e:
                    self.session.close()
                    log("mqtt", "connection lost: %s", describe(e, self.session.host, self.session.port))
                    retry_at = time.ticks_ms()
            else:
                time.sleep_ms(max(0, min(due, time.ticks_diff(retry_at, now))))


def start_wifi(cfg):
    attempt = 0
    while True:
        try:
            return wifi.connect(cfg["wifi"])
        except OSError as e:
            delay = backoff_ms(attempt, 30000)
            attempt += 1
            log("wifi", "%s; retrying in %d s", e.args[0] if e.args else e, delay // 1000)
            time.sleep_ms(delay)


def main(path="config.json"):
    log("boot", "node %s, MicroPython-compatible runtime on %s", __version__, sys.platform)
    try:
        cfg = config.load(path)
        node = Node(cfg)
    except ValueError as e:
        # One clear line, then back to the REPL: never a traceback loop.
        log("conf", "%s", e)
        log("conf", "node not started: fix config.json, then reset the board")
        return
    log("boot", "room '%s', reading every %d ms, LED on pin %d", cfg["room"], cfg["period_ms"], cfg["led"]["pin"])
    start_wifi(cfg)
    if cfg["ntp"] and cfg["mqtt"]["tls"]:
        clock.sync(cfg["ntp"]["host"])
    node.run()
