"""The node lives by each port's rules: watchdog, safe mode, reboots, tick wrap, memory.

The node lives by each port's rules (issue "the node on the real boards"): it starts under
the ESP8266's fixed 5 s watchdog, its safe mode is a gesture a real chip lets it see, Home
Assistant hears of it after every boot, its long runs survive the tick counter's wrap and
missed stats slots, and a config file by any name runs as config.json would."""
import json
import sys
import time

import pytest

from nodekit import REPO

sys.path.insert(0, str(REPO / "lib"))
from node import config  # noqa: E402

RAW = {"room": "salon", "wifi": {"ssid": "maison"}, "mqtt": {"host": "pi", "tls": False}}


def test_the_config_follows_the_port():
    assert config.check(dict(RAW), "esp8266")["watchdog_ms"] == 5000
    with pytest.raises(ValueError, match=r"config: watchdog_s: expected 5: an ESP8266's watchdog is fixed at 5 s"):
        config.check(dict(RAW, watchdog_s=60), "esp8266")
    assert config.check(dict(RAW, watchdog_s=60), "esp32")["watchdog_ms"] == 60000
    # A backlog that cannot fit the board's heap is refused at load, not by a MemoryError.
    with pytest.raises(ValueError, match=r"config: buffer: expected an integer 1\.\.250, got 1000"):
        config.check(dict(RAW, buffer=1000), "esp8266")
    assert config.check(dict(RAW, buffer=1000), "esp32")["buffer"] == 1000


def test_the_node_starts_under_the_esp8266_watchdog(broker, start_node, runtime):
    # ports/esp8266/machine_wdt.c takes 5000 ms only; the node used to ask for 60000.
    w = broker.witness("maison/salon/valeur")
    node = start_node(broker.node_config(period_s=0.5), runtime)
    w.next("maison/salon/valeur")
    w.next("maison/salon/valeur")
    assert (node.sim.board_dir / "wdt").read_text() == "5000"
    assert node.sim.watchdog_resets == 0 and "Traceback" not in node.log()


def test_a_silent_broker_never_trips_the_5_s_watchdog(start_node, runtime, tmp_path):
    """A broker that accepts TCP and never answers: each wait is bounded (2 s), the node backs
    off and keeps its readings, and the watchdog never resets it (umqtt.simple 1.5+'s
    connect() would block here until it did)."""
    import socket as pysocket

    from nodekit.broker import kit
    from nodekit.broker.mosquitto import free_port

    srv = pysocket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    out = str(tmp_path / "kit")
    kit.make_broker(out, host="localhost", port=free_port(), tools_port=free_port(), ws_port=free_port(), ws_tls=False,
                    local_port=free_port(), bind="127.0.0.1")
    path = kit.add_node(out, "salon", wifi_ssid="maison", wifi_password="pw", sensor="sim")
    cfg = json.load(open(path))
    cfg["mqtt"]["port"] = srv.getsockname()[1]
    cfg["period_s"] = 0.5
    json.dump(cfg, open(path, "w"))
    try:
        node = start_node(path, runtime)
        # axTLS gives up its reads as a lost connection, mbedTLS as a timeout: either way, 2 s.
        said = r"mqtt  (no answer from localhost:\d+ within 2 s|the TLS handshake with localhost:\d+ did not "
        said += r"finish: no answer within 2 s)"
        node.wait_log(said + r"(.|\n)*" + said, timeout=40)
        assert node.sim.watchdog_resets == 0 and node.alive()
        assert "kept (" in node.log()
    finally:
        srv.close()


def test_safe_mode_is_a_press_after_reset_not_a_button_held_at_reset(broker, start_node, runtime):
    cfg = broker.node_config()
    node = start_node(cfg, runtime, board="huzzah")
    node.wait_log(r"boot  press BOOT/FLASH \(GPIO0\) now for safe mode")
    (node.sim.board_dir / "pin0").write_text("0")  # pressed within the second
    node.wait_log(r"boot  safe mode: the BOOT/FLASH button was pressed after reset; node not started")
    deadline = time.monotonic() + 10
    while node.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.sim.proc.returncode == 3  # main.py returned: the REPL is free
    # Held through a reset, GPIO0 starts the ROM bootloader: MicroPython never runs.
    node.sim.start()
    node.wait_log(r"GPIO0 is low at reset: the ROM bootloader waits for esptool")
    assert node.sim.proc is None
    (node.sim.board_dir / "pin0").write_text("1")  # released, then reset: the node starts
    node.wait_log(r"mqtt  connected", timeout=30)


def test_a_node_driving_gpio0_low_still_starts_after_a_reset(broker, start_node, runtime):
    # The Huzzah's red LED is GPIO0, lit when low: a node that lit it and then reset must not
    # find itself in the ROM bootloader (a reset releases the chip's outputs).
    node = start_node(broker.node_config(led__pin=0, led__active_low=True), runtime, board="huzzah")
    w = broker.witness("maison/salon/led")
    assert w.next("maison/salon/led")[1] == b"0"
    w.publish("ctrlled", b"1")
    w.next("maison/salon/led", where=lambda m: m[1] == b"1")
    assert (node.sim.board_dir / "pin0").read_text() == "0"  # driven low: the LED is lit
    node.sim._kill()
    node.sim.start(5)
    node.wait_log(r"(?s)led   on \(restored after reset\).*mqtt  connected", timeout=30)
    assert "bootloader" not in node.log()


def test_home_assistant_hears_of_the_node_after_every_boot(broker, start_node, runtime):
    # First run without discovery: the broker keeps the node's persistent session.
    cfg = broker.node_config(period_s=0.5)
    node = start_node(cfg, runtime)
    node.wait_log(r"mqtt  connected .*\(new session\)")
    node.sim.stop()
    conf = json.loads(cfg.read_text())
    conf["homeassistant"] = True  # an upgrade: the same board, its session kept by the broker
    cfg.write_text(json.dumps(conf))
    w = broker.witness("homeassistant/#", user=broker.homeassistant["user"], password=broker.homeassistant["password"])
    node.sim.start()
    node.wait_log(r"mqtt  connected .*\(resumed session\)")
    w.next("homeassistant/sensor/maison_salon/valeur/config")
    late = broker.witness("homeassistant/#", user=broker.homeassistant["user"], password=broker.homeassistant["password"])
    assert late.next("homeassistant/sensor/maison_salon/valeur/config")[2]  # retained


def test_missed_stats_slots_are_skipped_not_bunched(broker, start_node, runtime):
    node = start_node(broker.node_config(stats_s=2, period_s=0.5), runtime)
    node.wait_log(r"mqtt  connected(.|\n)*read  \S+ -> maison/salon/valeur")  # connected and settled
    broker.mosq.stop()
    node.wait_log(r"mqtt  (connection lost: )?connection closed by the broker")
    time.sleep(7)  # three slots missed
    broker.mosq.start()
    w = broker.witness("maison/salon/stats")
    node.wait_log(r"mqtt  connected(.|\n)*mqtt  connected", timeout=60)
    for _ in range(3):
        w.next("maison/salon/stats", where=lambda m: not m[2])
    live = [m[3] for m in w.seen if m[0] == "maison/salon/stats" and not m[2]]
    # The one sent on connecting, then one a slot, 2 s apart (the first may fall just after
    # it): never the missed slots at once, so no three within a second.
    assert not any(c - a < 1.0 for a, c in zip(live, live[2:])), live


def test_the_tick_counter_wraps_under_the_node(broker, start_node, runtime):
    # A 32-bit port's ticks_ms wraps at 2**30 ms (12.4 days): start 4 s before it.
    w = broker.witness("maison/salon/valeur", "maison/salon/stats")
    node = start_node(broker.node_config(period_s=0.5, stats_s=2), runtime,
                      env={"SIMBOARD_TICKS_START": str((1 << 30) - 4000)})
    node.wait_log(r"mqtt  connected")
    start = time.monotonic()
    while time.monotonic() - start < 8:  # across the wrap and well after it
        w.next("maison/salon/valeur", timeout=5)
    node.wait_log(r"\n\s+[0-3]\.\d{3} read ", timeout=10)  # the log's clock went round too
    stats = [json.loads(m[1]) for m in w.seen if m[0] == "maison/salon/stats"]
    assert stats and stats[-1]["uptime_s"] < 60, stats[-1:]
    assert "Traceback" not in node.log() and node.sim.watchdog_resets == 0


def test_a_config_by_any_name_runs_on_the_simulated_board(broker, start_node, runtime, tmp_path):
    salon = broker.node_config("salon", period_s=0.5)
    folder = tmp_path / "noeuds"
    folder.mkdir()
    named = folder / "salon.json"
    named.write_text(salon.read_text())
    (folder / "ca.der").write_bytes((salon.parent / "ca.der").read_bytes())
    # A config.json of another room beside it must not be what runs.
    other = json.loads(salon.read_text())
    other["room"] = "garage"
    (folder / "config.json").write_text(json.dumps(other))
    w = broker.witness("maison/+/valeur")
    start_node(named, runtime)
    assert w.next()[0] == "maison/salon/valeur"
    assert not [m for m in w.seen if "garage" in m[0]]


_HANDSHAKE_WITHOUT_MEMORY = """
from node import app, config

node = app.Node(config.load("config.json"))


def no_memory():  # as a TLS handshake that never gets its memory
    raise MemoryError("memory allocation failed, allocating 5125 bytes")


node.session.connect = no_memory
for _ in range(10):
    node.take_reading()  # readings still succeed in between
    node.try_connect()
print("never reset")
"""


def test_a_handshake_that_never_gets_its_memory_ends_in_a_reset(broker, start_node, runtime, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "lib").symlink_to(REPO / "lib")
    (repo / "boot.py").write_text("")
    (repo / "main.py").write_text(_HANDSHAKE_WITHOUT_MEMORY)
    node = start_node(broker.node_config(), runtime, env={"NODE_REPO": str(repo)})
    node.wait_log(r"boot  out of memory 5 times in a row \(memory allocation failed, allocating 5125 bytes\): "
                  r"resetting")
    assert "never reset" not in node.log()
