# The node's main loop: a reading every period on a fixed grid, commands
# applied the moment they arrive, and the links (Wi-Fi, broker) remade when
# they break, without ever blocking the schedule or losing a reading.
import gc
import random
import sys
import time
from binascii import hexlify

import machine
from micropython import const

from node import feed, log, unload
from node.stats import Stats


def _imports():
    """The modules the running node needs, imported once the config is read and checked
    (node/start.py loads it first, with nothing else in the heap, then drops it): so the
    config's big messages and the rest of the node are never in RAM together."""
    global commands, sensor, Backlog, Session, describe, Wifi
    from node import commands, sensor
    from node.backlog import Backlog
    from node.session import Session, describe
    from node.wifi import Wifi


_LED_STATE_FILE = "led.state"  # the last commanded LED state, restored after a reboot
_WIFI_POLL_MS = const(200)
_LINK_CHECK_MS = const(1000)  # how often an idle node looks at its Wi-Fi link; also its longest sleep
_QUIET_MS = const(1000)       # at most one "ignored" line per second, however much garbage comes
_SHORT_LIFE_MS = const(30000)  # a connection the broker closes sooner hints at a duplicate client id
_MEMORY_RESETS = const(5)     # MemoryErrors in a row, in the same step, before a controlled reset
# A flood of valid commands (10,000 toggles in half a second) must not take the schedule: in each
# second, the first _CMD_TOLD are logged and echoed one by one; the rest only switch the LED, and
# the second ends with one line and one echo of where it stands. The LED's state is written to
# flash at most once per _SAVE_MS (an isolated command at once), and always before a reset.
_CMD_WINDOW_MS = const(1000)
_CMD_TOLD = const(10)
_SAVE_MS = const(1000)
_START_MS = const(760)  # a DS18B20 is asked this long before each reading: its 750 ms conversion (node/probes.py)


class Retry:
    """The node's whole reconnect policy, one per link (Wi-Fi, the clock, the broker), in two
    hooks as umqtt.robust keeps its own: delay() is the wait before the next attempt, a capped
    exponential backoff with jitter, so an access point or a broker that comes back is not met
    by every node at once; done() says the link worked, and the count starts again. When a
    link has worked is the link's to say: Wi-Fi once joined, the broker once a connection has
    lived _SHORT_LIFE_MS (Node._schedule_retry), the clock never needs it (set once)."""

    def __init__(self, cap_ms):
        self.cap_ms = cap_ms
        self.attempt = 0

    def delay(self):
        d = min(self.cap_ms, 1000 << min(self.attempt, 16))
        self.attempt += 1
        return d // 2 + random.getrandbits(20) % (d // 2 + 1)

    def done(self):
        self.attempt = 0


class Node:
    def __init__(self, cfg):
        _imports()
        from node import topics  # the names on the broker; dropped once the node is built
        # Collected after each stage of the start, so what lives for good lies packed at the
        # bottom of the heap and its top stays in one piece for the TLS handshake (axTLS
        # needs one 5 KB block, node/session.py): an automatic collect in the middle of the
        # start would leave long-lived objects scattered among holes.
        gc.collect()
        # What the loop needs of the config, kept as values: the checked config itself (its
        # dicts and texts, about 0.5 KB) is dropped once the node is built.
        self.period_ms = cfg["period_ms"]
        self.stats_ms = cfg["stats_ms"]
        self.backoff_max_ms = cfg["backoff_max_ms"]
        self._qos = cfg["qos"]
        self._json = cfg["payload"] == "json"
        self._tls = bool(cfg["mqtt"]["tls"])
        self._ntp_host = cfg["ntp"] and cfg["ntp"]["host"]  # None: no clock to set
        # What Home Assistant discovery describes (node/homeassistant.py), if it is on
        self._ha = {k: cfg[k] for k in ("room", "board", "payload", "sensor")} if cfg["homeassistant"] else None
        room = cfg["room"]
        self.t_value = (topics.VALUE % room).encode()
        self.t_led = (topics.LED % room).encode()
        # The LED the commands switch: off at power-on (active_low: lit when the pin is low).
        self._led_low = cfg["led"]["active_low"]
        self._led_pin = machine.Pin(cfg["led"]["pin"], machine.Pin.OUT, value=1 if self._led_low else 0)
        self.led_on = False
        # () -> a reading; a probe's second quantity of the same measure, on its own topic; what
        # asks a probe ahead of each reading (node/sensor.py)
        self.read, self.read2, self.start_read = sensor.make(cfg["sensor"])
        self.t_second = (topics.SECOND % room).encode() if self.read2 else None
        self._part = 0  # 1 while the oldest slot's reading is delivered and its second is not
        # Stable across reboots: the room plus the chip's own id.
        self.client_id = cfg["mqtt"]["client_id"] or "%s-%s" % (room, hexlify(machine.unique_id()).decode())
        self.session = Session(cfg, self.client_id, self.on_message, self.on_puback)
        gc.collect()
        self.backlog = Backlog(cfg["buffer"], self.read2 is not None)
        self.wifi = Wifi(cfg["wifi"], Retry(cfg["backoff_max_ms"]), cfg["mqtt"]["host"])
        self.stats = Stats()
        self.stats.unit = cfg["sensor"]["unit"]
        self.t_stats = (topics.STATS % room).encode()
        unload("topics")
        self.seq = 0
        self.is_int = None  # the sensor's kind of number, learnt from its first reading
        self._quiet_until = time.ticks_ms()
        self._suppressed = 0
        self._connected_at = None
        self._short_lives = 0
        # MemoryErrors in a row, counted apart for the steps that can meet one, so readings
        # that still succeed never hide a handshake that can never get its memory.
        self._oom_read = self._oom_link = 0
        self._announced = False  # Home Assistant discovery: once per boot, on the first connect
        self._stats_due = False  # stats to send once the backlog delivered on connecting is through
        self._cmd_window = self._saved_at = time.ticks_add(time.ticks_ms(), -_SAVE_MS)
        self._cmd_count = self._cmd_untold = 0
        self._led_dirty = False  # switched since led.state was last written
        from node import start  # imported by main(), which unloads it after the start

        start.restore_led(self, _LED_STATE_FILE)
        gc.collect()

    # --- commands: ctrlled and maison/<room>/led/set -------------------------
    def on_message(self, topic, msg, retained=0):
        # msg: the payload, or only its length when the session dropped it unread (too long)
        cmd = None if type(msg) is int else commands.parse(msg)
        if cmd == commands.TOGGLE and retained:
            # The broker hands a retained message to every new session (a broker that lost ours
            # after a crash, a new board): a retained toggle would flip the LED each time.
            self.stats.ignored += 1
            log("cmd", "retained 'toggle' on %s not applied (it would flip the LED at every new session): "
                "send it without -r; clear it with mosquitto_pub -r -n -t %s", topic.decode(), topic.decode())
            return
        if cmd is None:
            self.stats.ignored += 1
            now = time.ticks_ms()
            if time.ticks_diff(now, self._quiet_until) < 0:
                self._suppressed += 1
                return
            self._quiet_until = time.ticks_add(now, _QUIET_MS)
            log("cmd", "ignored %d bytes on %s: expected 1/0, on/off, true/false or toggle%s",
                msg if type(msg) is int else len(msg), topic.decode(), " (%d more ignored)" % self._suppressed if self._suppressed else "")
            self._suppressed = 0
            return
        self.stats.commands += 1
        on = not self.led_on if cmd == commands.TOGGLE else cmd == commands.ON
        if on != self.led_on:
            self.switch_led(on)  # at once, whatever the rate: the LED follows every command
            self._led_dirty = True
        now = time.ticks_ms()
        self.settle_led(now)  # a second that is over is told (and led.state written) first
        if time.ticks_diff(now, self._cmd_window) >= _CMD_WINDOW_MS:
            self._cmd_window = now
            self._cmd_count = 0
        self._cmd_count += 1
        if self._cmd_count > _CMD_TOLD:
            self._cmd_untold += 1  # a burst: told and echoed once, when its second ends (settle_led)
            return
        log("led", "%s (%s)", "on" if on else "off", topic.decode())
        self.publish_led()

    def settle_led(self, now):
        """What a burst of commands put off: led.state written (at most once per _SAVE_MS), and
        once its second is over, one line and one echo saying where the LED stands. Called by
        the loop at every turn."""
        # Kept within reach of now: ticks_diff() of two ticks more than 2**29 ms (6.2 days)
        # apart is negative, and a week without a command would then look like a burst.
        if time.ticks_diff(now, self._saved_at) > _SAVE_MS and not self._led_dirty:
            self._saved_at = time.ticks_add(now, -_SAVE_MS)
        if time.ticks_diff(now, self._cmd_window) > _CMD_WINDOW_MS and not self._cmd_untold:
            self._cmd_window = time.ticks_add(now, -_CMD_WINDOW_MS)
            self._cmd_count = 0
        if time.ticks_diff(now, self._quiet_until) > 0:
            self._quiet_until = now
        if self._led_dirty and time.ticks_diff(now, self._saved_at) >= _SAVE_MS:
            self._saved_at = now
            self._save_led()
        if self._cmd_untold and time.ticks_diff(now, self._cmd_window) >= _CMD_WINDOW_MS:
            log("led", "%s (after %d more commands in a second)", "on" if self.led_on else "off", self._cmd_untold)
            self._cmd_untold = 0
            if self.session.connected:  # else the echo goes out on connecting (try_connect)
                self.publish_led()

    def switch_led(self, on):
        self._led_pin.value(on != self._led_low)
        self.led_on = on

    def publish_led(self):
        self.session.publish(self.t_led, b"1" if self.led_on else b"0", True)

    def _save_led(self):
        # Written only when a command changes the LED, and at most once per _SAVE_MS (settle_led),
        # so the flash does not wear.
        self._led_dirty = False
        try:
            with open(_LED_STATE_FILE, "w") as f:
                f.write("1" if self.led_on else "0")
        except OSError as e:
            log("led", "cannot save the LED state (%s)", e)

    # --- readings -------------------------------------------------------------
    def take_reading(self):
        try:
            value = self.read()
            second = self.read2() if self.read2 else 0
        except Exception as e:  # a faulty sensor skips this reading, not the loop
            self.stats.sensor_errors += 1
            log("read", "sensor error: %r; reading skipped", e)
            self._oom_read = self._out_of_memory(e, self._oom_read)
            return
        self._oom_read = 0
        if self.is_int is None:
            self.is_int = type(value) is int
        self.seq += 1
        if self.backlog.push(value, time.ticks_ms(), second):
            # The oldest may be the one in flight: its PUBACK must then pop nothing else.
            self.session.inflight = 0
            self._part = 0
            log("read", "buffer full (%d readings): oldest dropped, %d dropped so far",
                self.backlog.size, self.backlog.dropped)
        if not self.session.connected:
            log("read", "%s kept (%d waiting): not connected", self._text(value), self.backlog.count)

    def _missed(self, n):
        """Slots that passed while one step held the loop (a TLS handshake with a frozen broker,
        a slow sensor): counted in the stats (`missed`) and logged, never silent. seq counts the
        readings taken, so a gap in it still means a reading lost."""
        if n:
            self.stats.missed += n
            log("read", "%d reading slot(s) missed: the loop was held %d ms", n, n * self.period_ms)

    def _text(self, value):
        return "%d" % value if self.is_int else "%.2f" % value

    def deliver(self):
        """Publish waiting readings, oldest first. With QoS 1 (the default) one is in flight at
        a time, and it leaves the backlog only when its PUBACK comes (on_puback, which sends the
        next): the loop never waits for an acknowledgement, so readings keep their slots while
        the broker is slow or a flood of commands stands before the PUBACK. QoS 0 ("qos": 0)
        saves the PUBACK's radio time, and a reading written just before the link breaks is lost."""
        b = self.backlog
        s = self.session
        while b.count and s.connected and not s.inflight:
            value, ticks = b.oldest()
            seq = self.seq - b.count + 1  # (node/backlog.py: the readings are consecutive)
            if self._part:  # the same slot's second quantity, with its seq
                value = b.second()
            text = self._text(value)
            if self._json:
                payload = '{"value": %s, "seq": %d, "age_ms": %d}' % (
                    text, seq, time.ticks_diff(time.ticks_ms(), ticks))
            else:
                payload = text
            s.publish(self.t_second if self._part else self.t_value, payload.encode(), False, self._qos, False)
            if not self._qos:
                self._delivered()

    def on_puback(self, pid):
        """The broker has the reading in flight (node/session.py hands on its PUBACK)."""
        feed()  # acknowledged: a long backlog is progress, not a hang
        self._delivered()
        self.deliver()
        if self._stats_due and not self.backlog.count:  # the backlog is through: say so
            self._stats_due = False
            self.publish_stats()

    def _delivered(self):
        b = self.backlog
        if self._part:
            self._part = 0
            log("read", "%s -> %s", self._text(b.second()), self.t_second.decode())
            b.pop()
            return
        text = self._text(b.oldest()[0])
        self.stats.sent += 1
        if self.t_second:
            self._part = 1  # the slot leaves the backlog once its second is through too
        else:
            b.pop()
        log("read", "%s -> %s%s", text, self.t_value.decode(),
            " (late, %d waiting)" % (b.count - self._part) if b.count - self._part else "")

    # --- connection -------------------------------------------------------------
    def publish_stats(self):
        self.session.publish(self.t_stats, self.stats.as_json(self.backlog, self.wifi.losses).encode(), True)

    def announce(self):
        """Home Assistant discovery configs, retained (node/homeassistant.py)."""
        from node import homeassistant

        try:
            for topic, payload in homeassistant.configs(self._ha, hexlify(machine.unique_id()).decode()):
                self.session.publish(topic.encode(), payload.encode(), True, 1)
        finally:
            unload("homeassistant")
            unload("topics")  # which it loaded again
        log("mqtt", "Home Assistant discovery sent")

    def try_connect(self):
        s = self.session
        try:
            resumed = s.connect()
            log("mqtt", "connected to %s:%d as %s (%s session)", s.host, s.port, self.client_id,
                "resumed" if resumed else "new")
            if self._connected_at is not None:
                self.stats.reconnects += 1
            self._connected_at = time.ticks_ms()
            self._oom_link = 0
            # After every boot, not only on a new session: a node upgraded, or first run
            # without "homeassistant", would never announce. Retained, so idempotent.
            if self._ha and not (resumed and self._announced):
                self.announce()
                self._announced = True
            self.publish_led()
            self.deliver()
            # After the backlog (on_puback sends them once it is through): they say sent N,
            # waiting 0, not the other way round.
            self._stats_due = bool(self.backlog.count)
            if not self._stats_due:
                self.publish_stats()
            return True
        except Exception as e:  # any failure of the link or the broker: say why, retry later
            s.close()
            self._oom_link = self._out_of_memory(e, self._oom_link)
            log("mqtt", "%s", describe(e, s.host, s.port))
            return False

    def _out_of_memory(self, e, in_a_row):
        """Count a MemoryError of one step; return that step's new count. Survived: collect
        and retry; a run of them (the heap too fragmented ever to serve it) ends in a
        controlled reset, which gives back an unfragmented heap."""
        if not isinstance(e, MemoryError):
            return in_a_row
        self.stats.memory_errors += 1
        in_a_row += 1
        gc.collect()
        if in_a_row >= _MEMORY_RESETS:
            log("boot", "out of memory %d times in a row (%s): resetting", in_a_row, e)
            if self._led_dirty:
                self._save_led()  # the last commanded state survives the reset
            machine.reset()
        return in_a_row

    def _schedule_retry(self, lived_ms=0):
        """When to try the broker again (Retry): at once after a connection that had lived a
        while, which is the broker link working; else after the backoff, so that a broker that
        refuses us, or accepts then drops us, never gets a storm."""
        if lived_ms >= _SHORT_LIFE_MS:
            self._retry.done()
            delay = 0
        else:
            delay = self._retry.delay()
            log("mqtt", "next attempt in %d.%d s", delay // 1000, delay % 1000 // 100)
        self._retry_at = time.ticks_add(time.ticks_ms(), delay)

    def _lost(self, e):
        """The connection broke: say why, and set when to reconnect."""
        self.session.close()
        self._oom_link = self._out_of_memory(e, self._oom_link)
        log("mqtt", "connection lost: %s", describe(e, self.session.host, self.session.port))
        lived = time.ticks_diff(time.ticks_ms(), self._connected_at or 0)
        self._schedule_retry(lived)
        # The broker drops an older connection when another client connects with the
        # same id; two such clients knock each other off in turn.
        if "closed" in str(e) or (e.args and e.args[0] == -1):
            self._short_lives = self._short_lives + 1 if lived < _SHORT_LIFE_MS else 0
            if self._short_lives >= 3:
                self.stats.id_conflicts += 1
                log("mqtt", "the broker keeps closing our connection right after connecting: "
                    "is another client using the id '%s'? (%d times)", self.client_id, self.stats.id_conflicts)
                self._short_lives = 0

    def run(self):
        period = self.period_ms
        stats_ms = self.stats_ms
        self._retry = Retry(self.backoff_max_ms)
        self._retry_at = time.ticks_ms()
        t_next = time.ticks_ms()
        t_stats = time.ticks_add(t_next, stats_ms)
        # NTP until it answers (the Pi may boot after us), unless nothing needs the clock or
        # it survived the reset. node/clock.py and ntptime stay in RAM only until then.
        clock = None
        if self._ntp_host and self._tls:
            from node import clock

            if clock.is_set():
                clock = _forget_clock()
        clock_at = t_next
        clock_retry = Retry(self.backoff_max_ms) if clock else None
        asked = False  # the probe asked ahead of the next reading (self.start_read)
        # Fed when the loop comes round (and by the session as packets arrive): a hang
        # anywhere resets the board, while Wi-Fi or broker outages, which the loop rides
        # out, never do. No step of the loop waits longer than the watchdog allows.
        while True:
            feed()
            now = time.ticks_ms()
            try:
                self.settle_led(now)
            except Exception as e:  # its echo met a broken connection
                self._lost(e)
            if self.session.connected and time.ticks_diff(now, t_stats) >= 0:
                t_stats = _next_slot(t_stats, stats_ms, now)
                try:
                    self.publish_stats()
                except Exception as e:
                    self._lost(e)
                continue
            due = time.ticks_diff(t_next, now)
            if due <= 0:
                self._missed(-due // period)
                self.take_reading()
                t_next = _next_slot(t_next, period, now)
                asked = False
                if self.session.connected:
                    try:
                        self.deliver()
                    except Exception as e:
                        self._lost(e)
                continue
            if self.start_read and not asked:  # a DS18B20 converts while the loop goes on
                if due <= _START_MS:
                    self.start_read()
                    asked = True
                    continue
                due -= _START_MS  # the waits below end in time to ask it
            if not self.wifi.up():
                if self.session.connected:
                    self.session.close()
                    log("mqtt", "disconnected: no Wi-Fi")
                time.sleep_ms(min(due, _WIFI_POLL_MS))
                continue
            if clock:
                if time.ticks_diff(now, clock_at) >= 0:  # one query, at most ntptime.timeout (1 s)
                    delay = clock_retry.delay()
                    clock_at = time.ticks_add(time.ticks_ms(), delay)
                    if clock.sync(self._ntp_host, delay):
                        clock = _forget_clock()
                    continue
                if clock.waiting():  # ESP32: no TLS without the date
                    time.sleep_ms(min(due, time.ticks_diff(clock_at, now), _LINK_CHECK_MS))
                    continue
            if not self.session.connected:
                if time.ticks_diff(now, self._retry_at) < 0:
                    time.sleep_ms(min(due, time.ticks_diff(self._retry_at, now), _LINK_CHECK_MS))
                    continue
                if self.try_connect():
                    now = time.ticks_ms()
                    if time.ticks_diff(now, t_stats) >= 0:  # the stats sent on connecting fill that slot
                        t_stats = _next_slot(t_stats, stats_ms, now)
                else:
                    self._schedule_retry()
                continue
            try:
                self.session.wait(min(due, _LINK_CHECK_MS))
            except Exception as e:
                self._lost(e)


def _forget_clock():
    """The clock is set: its code and the firmware's ntptime leave RAM. Returns None, the
    loop's new `clock`."""
    unload("clock")
    sys.modules.pop("ntptime", None)


def _next_slot(t, every, now):
    """The first slot after now on the grid t + k*every: slots missed while the board was
    stalled or offline are skipped, not bunched."""
    return time.ticks_add(t, every * (1 + time.ticks_diff(now, t) // every))


def main(path="config.json"):
    """Start the node (node/start.py, dropped from RAM once done) and run it."""
    node = _start(path)
    if node:
        node.run()


def _start(path):
    # Its own frame, gone before the loop runs: a local naming the start module in main()
    # would keep it in RAM for the node's whole life (1.2 KB on the 64-bit VM).
    from node import start

    try:
        return start.node(path)
    finally:
        unload("start")
        gc.collect()
