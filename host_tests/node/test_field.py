"""A node in the field rides out outages, Wi-Fi loss and reboots without losing a reading.

Faults in the field against a real broker: outages, Wi-Fi loss, commands while
away, retained commands, reboots. What the user sees: topics, order, LED, log."""
import json
import os
import re
import signal
import time

from nodekit.sim import simnode


def readings(w, n, timeout=20):
    return [json.loads(w.next("maison/salon/valeur", timeout=timeout)[1]) for _ in range(n)]


def test_broker_restart_loses_no_reading(broker, start_node, runtime):
    # A persistent witness: the node may deliver its backlog before any new subscriber could
    # subscribe after the restart; the broker queues it for this one (and paho reconnects it).
    w = broker.witness("maison/salon/valeur", persistent=True)
    node = start_node(broker.node_config(period_s=0.3, payload="json"), runtime)
    first = readings(w, 2)
    broker.mosq.stop()
    node.wait_log(r"mqtt  connection lost")
    node.wait_log(r"read  .* kept \(3 waiting\): not connected")
    broker.mosq.start()
    node.wait_log(r"mqtt  connected to .*\(resumed session\)", timeout=40)
    got = readings(w, 8, timeout=40)
    # The stats sent on connecting come after the backlog: nothing is shown waiting that has gone.
    # The stats sent on reconnecting come after the backlog: nothing is shown waiting that has gone.
    # (Retained: a new subscriber gets the latest, the one sent on reconnecting.)
    st = json.loads(broker.witness("maison/salon/stats").next("maison/salon/stats",
                                                              where=lambda m: b'"reconnects": 1' in m[1])[1])
    assert st["waiting"] == 0 and st["sent"] >= len(first) + 3, st
    seqs = [r["seq"] for r in first] + [r["seq"] for r in got]
    # In order, none missing, from the first reading on (at-least-once: no gap).
    later = [r["seq"] for r in got]
    assert later == sorted(later)
    assert later[0] <= first[-1]["seq"] + 1 and later == list(range(later[0], later[0] + len(later))), seqs
    # Three readings were kept 0.3 s apart: the oldest is at least 0.6 s old when delivered.
    assert max(r["age_ms"] for r in got) >= 500, got
    assert "Traceback" not in node.log()


def test_wifi_drop_and_return(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur", "maison/salon/status")
    node = start_node(broker.node_config(period_s=0.3, payload="json"), runtime)
    readings(w, 1)
    simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=False)
    node.wait_log(r"wifi  link to 'maison' lost")
    node.wait_log(r"wifi  network not found \('maison'\); retrying in")
    node.wait_log(r"read  .* kept \(2 waiting\)")
    simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=True)
    node.wait_log(r"wifi  connected to 'maison'", timeout=40)
    node.wait_log(r"\(late, \d+ waiting\)", timeout=30)
    seqs = [r["seq"] for r in readings(w, 6)]
    # In order, none missing; one in flight when the link went may come twice (at least once).
    once = [q for i, q in enumerate(seqs) if i == 0 or q != seqs[i - 1]]
    assert once == list(range(once[0], once[0] + len(once))) and len(once) >= 5, seqs
    assert node.alive() and "Traceback" not in node.log()


def test_wrong_wifi_password_is_named(broker, start_node, runtime):
    node = start_node(broker.node_config(), runtime, ap={"ssid": "maison", "password": "changed"})
    node.wait_log(r"wifi  wrong Wi-Fi password \('maison'\); retrying in")
    assert node.alive()


def test_commands_sent_while_away_are_applied_on_return(broker, start_node, runtime):
    w = broker.witness("maison/salon/led")
    node = start_node(broker.node_config(period_s=60), runtime)
    assert w.next("maison/salon/led")[1] == b"0"
    simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=False)
    node.wait_log(r"mqtt  disconnected: no Wi-Fi")
    time.sleep(0.5)
    w.publish("ctrlled", b"1")  # QoS 1, not retained: only the node's kept session holds it
    assert node.led_on() is False
    simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=True)
    node.wait_log(r"led   on \(ctrlled\)", timeout=40)
    assert node.led_on() is True


def test_a_retained_toggle_is_never_applied_and_a_retained_on_is(broker, start_node, runtime):
    # A retained message comes with every new session: a broker that lost the node's session (killed
    # within its autosave window), or a new board. 1/0 are the same each time; a toggle is not.
    w = broker.witness("maison/salon/led")
    w.publish("maison/salon/led/set", b"toggle", retain=True)
    node = start_node(broker.node_config(period_s=60), runtime)
    node.wait_log(r"cmd   retained 'toggle' on maison/salon/led/set not applied \(it would flip the LED at every "
                  r"new session\): send it without -r; clear it with mosquitto_pub -r -n -t maison/salon/led/set")
    assert w.next("maison/salon/led")[1] == b"0"  # its echo: still off
    assert node.led_on() is False
    w.publish("ctrlled", b"1", retain=True)
    node.wait_log(r"led   on \(ctrlled\)")
    for n in (1, 2):  # reconnect twice: nothing applied again, nothing flipped
        simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=False)
        node.wait_log(r"(?s)(mqtt  disconnected: no Wi-Fi.*){%d}" % n)
        simnode.set_ap(node.sim.board_dir, "maison", "wifi-pw", up=True)
        node.wait_log(r"(?s)(resumed session.*){%d}" % n, timeout=40)
    time.sleep(1)
    assert node.led_on() is True
    assert node.log().count("led   on (ctrlled)") == 1 and "led   off" not in node.log()
    w.publish("maison/salon/led/set", b"", retain=True)
    w.publish("ctrlled", b"", retain=True)


def test_reboot_restores_the_last_commanded_led(broker, start_node, runtime):
    w = broker.witness("maison/salon/led")
    cfg = broker.node_config(period_s=60)
    node = start_node(cfg, runtime)
    w.next("maison/salon/led")
    w.publish("maison/salon/led/set", b"1")
    assert w.next("maison/salon/led", where=lambda m: m[1] == b"1")
    os.killpg(node.sim.proc.pid, signal.SIGKILL)  # a power cut
    node.sim.proc.wait()
    again = start_node(cfg, runtime, name="again")
    again.wait_log(r"led   on \(restored after reset\)")
    assert again.led_on() is True


def test_a_flood_of_valid_commands_leaves_the_readings_on_time(broker, start_node, runtime):
    # 10,001 toggles at once (any account that may command can send them): the LED follows them
    # all, the readings keep their slots, and the flood costs a few log lines, echoes and writes.
    w = broker.witness("maison/salon/valeur", "maison/salon/led")
    node = start_node(broker.node_config(period_s=0.5, payload="json"), runtime)
    w.next("maison/salon/valeur", timeout=30)
    for _ in range(10001):
        w.c.publish("maison/salon/led/set", b"toggle", qos=0)
    w.publish("maison/salon/led/set", b"on")  # last: the LED must end on, and say so
    t0 = time.monotonic()
    w.next("maison/salon/led", where=lambda m: m[1] == b"1", timeout=60)
    node.wait_log(r"led   on \(after \d+ more commands in a second\)|led   on \(maison/salon/led/set\)", timeout=30)
    # The readings through the flood and after: taken one every 0.5 s (when each arrived, less
    # its age_ms: the flood may hold a PUBACK, and readings then wait their turn), no slot skipped.
    got = [w.next("maison/salon/valeur", timeout=10) for _ in range(12)]
    seqs = [json.loads(m[1])["seq"] for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + 12)), seqs
    every = [m for m in w.seen if m[0] == "maison/salon/valeur"]
    taken = [m[3] - json.loads(m[1])["age_ms"] / 1000 for m in every]
    gaps = [round(b - a, 2) for a, b in zip(taken, taken[1:])]
    assert max(gaps) < 0.9, gaps
    assert node.led_on() is True
    # A line for each of the first ten commands of a second, then one for the rest of it.
    t = [float(l.split()[0]) for l in node.log().splitlines() if " led " in l]
    assert 2 <= len(t) <= 200 and max(sum(a <= b < a + 1 for b in t) for a in t) <= 22, t  # (two windows)
    assert "Traceback" not in node.log() and time.monotonic() - t0 < 60


def test_garbage_burst_is_ignored_quietly(broker, start_node, runtime):
    w = broker.witness("maison/salon/led", "maison/salon/stats")
    node = start_node(broker.node_config(period_s=60, stats_s=1), runtime)
    w.next("maison/salon/led")
    payloads = [b"", b"\x00\xff" * 10, b"\xc3\x28", b"x" * 4000, b"allume la lumiere"] + [b"n%d" % i for i in range(2000)]
    for p in payloads:
        w.c.publish("ctrlled", p, qos=0)
    w.publish("ctrlled", b"1")
    assert w.next("maison/salon/led", where=lambda m: m[1] == b"1", timeout=60)
    stats = w.next("maison/salon/stats", where=lambda m: json.loads(m[1])["ignored"] == len(payloads), timeout=30)
    assert json.loads(stats[1])["commands"] == 1
    assert node.log().count("cmd   ignored") < 20  # rate-limited, not 2005 lines
    assert node.led_on() is True and "Traceback" not in node.log()


def test_sensor_failure_skips_readings_and_is_counted(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur", "maison/salon/stats")
    cfg = broker.node_config(period_s=0.3, sensor__type="adc", stats_s=1)
    node = start_node(cfg, runtime)
    (node.sim.board_dir / "adc0").write_text("1234")
    assert w.next("maison/salon/valeur", where=lambda m: m[1] == b"1234")
    (node.sim.board_dir / "adc0").write_text("error")
    node.wait_log(r"read  sensor error: OSError\(5")
    (node.sim.board_dir / "adc0").write_text("4321")
    assert w.next("maison/salon/valeur", where=lambda m: m[1] == b"4321")
    assert w.next("maison/salon/stats", where=lambda m: json.loads(m[1])["sensor_errors"] >= 1)


def test_watchdog_resets_a_hung_node_but_not_an_outage(broker, start_node, runtime):
    # The ESP8266's watchdog: 5 s, the only timeout its port accepts.
    cfg = broker.node_config(period_s=0.3, sensor__type="adc", mqtt__keepalive=2)
    w = broker.witness("maison/salon/stats")
    node = start_node(cfg, runtime)
    node.wait_log(r"mqtt  connected")
    # An outage longer than the watchdog's timeout: no reset.
    broker.mosq.stop()
    time.sleep(8)
    node.sim.poll()
    assert node.sim.watchdog_resets == 0
    broker.mosq.start()
    # A hung sensor read stalls the loop: the watchdog resets the board, which starts again.
    (node.sim.board_dir / "adc0").write_text("hang")
    node.wait_log(r"board reset by the watchdog", timeout=20)
    (node.sim.board_dir / "adc0").write_text("100")
    node.wait_log(r"reset cause: wdt")
    stats = broker.witness("maison/salon/stats").next("maison/salon/stats",
                                                        where=lambda m: json.loads(m[1])["reset_cause"] == "wdt")
    assert stats


def test_safe_mode_file_keeps_the_node_off(broker, start_node, runtime):
    cfg = broker.node_config()
    (cfg.parent / "SAFEMODE").write_text("")
    node = start_node(cfg, runtime)
    node.wait_log(r"boot  safe mode: the SAFEMODE file is present")
    for _ in range(100):
        if not node.alive():
            break
        time.sleep(0.05)
    assert node.sim.proc.returncode == 3  # main.py returned: the REPL is free
    assert "mqtt" not in node.log()


def test_second_client_with_the_same_id_is_noticed(broker, start_node, runtime):
    import paho.mqtt.client as paho
    cfg = broker.node_config(period_s=60)
    node = start_node(cfg, runtime)
    m = node.wait_log(r"connected to \S+ as (\S+)")
    creds = json.loads(cfg.read_text())["mqtt"]
    # A second board flashed with the same client id (and account): reconnects as eagerly.
    twin = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=m.group(1), clean_session=False,
                       reconnect_on_failure=True)
    twin.tls_set(ca_certs=broker.ca)
    twin.username_pw_set(creds["user"], creds["password"])
    twin.reconnect_delay_set(1, 1)
    twin.connect("localhost", broker.port)
    twin.loop_start()
    try:
        node.wait_log(r"is another client using the id '%s'\?" % m.group(1), timeout=90)
    finally:
        twin.loop_stop()
        twin.disconnect()
    assert node.alive() and "Traceback" not in node.log()


def test_frozen_broker_is_detected_by_keepalive(broker, start_node, runtime):
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(period_s=60, mqtt__keepalive=2), runtime)
    w.next("maison/salon/valeur")
    broker.mosq.proc.send_signal(signal.SIGSTOP)  # TCP stays open, nothing answers
    try:
        t0 = time.monotonic()
        node.wait_log(r"mqtt  connection lost: .*(broker silent for more than 1.5 x keepalive|no answer)", timeout=20)
        assert time.monotonic() - t0 < 1.5 * 2 + 2  # 1.5 x keepalive, plus the time to notice
    finally:
        broker.mosq.proc.send_signal(signal.SIGCONT)
    node.wait_log(r"(?s)mqtt  connection lost.*mqtt  connected to", timeout=40)
    assert node.alive() and "Traceback" not in node.log()


def test_slots_a_frozen_broker_costs_are_counted(broker, start_node, runtime):
    # Frozen (kill -STOP): TCP connects, TLS never answers, so each attempt holds the loop for its
    # bounded waits. The slots that passed meanwhile are counted and said, never silent.
    w = broker.witness("maison/salon/valeur", "maison/salon/stats")
    node = start_node(broker.node_config(period_s=0.2, mqtt__keepalive=1, backoff_max_s=1), runtime)
    w.next("maison/salon/valeur")
    broker.mosq.proc.send_signal(signal.SIGSTOP)
    try:
        node.wait_log(r"mqtt  connection lost", timeout=20)
        m = node.wait_log(r"read  (\d+) reading slot\(s\) missed: the loop was held \d+ ms", timeout=30)
    finally:
        broker.mosq.proc.send_signal(signal.SIGCONT)
    node.wait_log(r"(?s)missed.*mqtt  connected to", timeout=40)
    said = sum(int(n) for n in re.findall(r"read  (\d+) reading slot\(s\) missed", node.log()))
    st = json.loads(w.next("maison/salon/stats", where=lambda m: json.loads(m[1])["missed"] > 0, timeout=30)[1])
    assert 0 < st["missed"] <= said and st["dropped"] == 0, (st, said)
    assert int(m.group(1)) >= 1 and node.alive() and "Traceback" not in node.log()


def test_acl_dropping_the_nodes_publishes_does_not_stop_it(broker, start_node, runtime, capsys):
    import pathlib
    from nodekit import doctor
    w = broker.witness("maison/salon/valeur", "maison/salon/led")
    cfg = broker.node_config(period_s=0.3)
    acl = pathlib.Path(broker.out, "acl")
    acl.write_text(acl.read_text().replace("topic write maison/salon/valeur\n", ""))
    broker.mosq.reload()
    node = start_node(cfg, runtime)
    node.wait_log(r"(?s)(read  \S+ -> maison/salon/valeur.*){5}")  # acknowledged, silently dropped
    w.publish("ctrlled", b"1")  # commands still work: reading ctrlled is allowed
    node.wait_log(r"led   on \(ctrlled\)")
    assert node.alive() and "Traceback" not in node.log()
    assert all(m[0] != "maison/salon/valeur" for m in w.seen)  # nothing got through
    assert doctor.main(["--config", str(cfg)]) == 1
    assert "FAIL  publish: the broker refuses 'salon' publishing on maison/salon/valeur" in capsys.readouterr().out


def test_memory_errors_are_survived_and_a_run_of_them_resets(broker, start_node, runtime):
    w = broker.witness("maison/salon/stats")
    node = start_node(broker.node_config(period_s=0.3, sensor__type="adc", stats_s=1), runtime)
    adc = node.sim.board_dir / "adc0"
    adc.write_text("memory")
    node.wait_log(r"read  sensor error: MemoryError")
    adc.write_text("7")
    node.wait_log(r"read  7 -> maison/salon/valeur")
    assert node.sim.resets == 0  # one is survived
    adc.write_text("memory")
    node.wait_log(r"boot  out of memory 5 times in a row \(.*\): resetting")
    adc.write_text("8")
    node.wait_log(r"reset cause: soft")
    assert node.sim.resets == 1
    assert w.next("maison/salon/stats", where=lambda m: json.loads(m[1])["memory_errors"] >= 1)


def test_last_will_says_offline(broker, start_node, runtime):
    w = broker.witness("maison/salon/status")
    node = start_node(broker.node_config(period_s=60, mqtt__keepalive=2), runtime)
    assert w.next("maison/salon/status", where=lambda m: m[1] == b"online")
    os.killpg(node.sim.proc.pid, signal.SIGKILL)  # the node vanishes without a goodbye
    msg = w.next("maison/salon/status", where=lambda m: m[1] == b"offline", timeout=20)
    late = broker.witness("maison/salon/status").next("maison/salon/status")
    assert late[1] == b"offline" and late[2]  # retained


def test_buffer_overflow_drops_the_oldest_and_counts(broker, start_node, runtime):
    node = start_node(broker.node_config(period_s=0.2, payload="json", buffer=3, stats_s=1), runtime)
    node.wait_log(r"-> maison/salon/valeur")
    broker.mosq.stop()
    node.wait_log(r"(?s)(read  buffer full \(3 readings\): oldest dropped.*){3}")
    broker.mosq.start()
    w = broker.witness("maison/salon/valeur", "maison/salon/stats")
    stats = w.next("maison/salon/stats", where=lambda m: json.loads(m[1])["dropped"] >= 3, timeout=30)
    seqs = [json.loads(w.next("maison/salon/valeur")[1])["seq"] for _ in range(5)]
    assert seqs == sorted(seqs)
