"""A power cut or a full disk on the Pi never leaves a broker that refuses to start or comes back stale.

A power cut or a full disk on the Pi must not leave a broker that refuses to start, nor one that comes back with a stale state."""
import contextlib
import errno
import os
import signal
import subprocess
import time

import pytest

from nodekit.broker import dbguard


def _retained(b, topic):
    w = b.witness(topic)
    try:
        return w.next(topic, timeout=3)[1]
    except AssertionError:
        return None


def test_valid_database_is_kept_and_restored(broker):
    broker.witness().publish("maison/salon/led/set", b"1", retain=True)
    broker.mosq.stop()  # saves the database
    db = broker.mosq.persistence_file()
    assert os.path.getsize(db) > 0
    broker.mosq.start()
    assert _retained(broker, "maison/salon/led/set") == b"1"


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_corrupt_database_is_moved_aside_and_broker_starts(broker, damage):
    broker.witness().publish("maison/salon/led/set", b"1", retain=True)
    broker.mosq.stop()
    db = broker.mosq.persistence_file()
    data = open(db, "rb").read()
    with open(db, "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncated" else b"\0" * len(data))
    assert dbguard.problem(open(db, "rb").read())
    broker.mosq.start()  # would fail with "Unable to restore persistent database" unguarded
    aside = [n for n in os.listdir(os.path.dirname(db)) if n.startswith("mosquitto.db.corrupt-")]
    assert len(aside) == 1
    assert _retained(broker, "maison/salon/led/set") is None  # what was in the lost file is gone, said so
    broker.witness().publish("maison/salon/led/set", b"0", retain=True)
    assert _retained(broker, "maison/salon/led/set") == b"0"


@contextlib.contextmanager
def small_disk(path, size="1m"):
    """A 1 MB filesystem at path (tmpfs; root can mount one), unmounted after."""
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot mount a small filesystem here (%s)" % r.stderr.strip())
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)])


def _fill(folder):
    """Take every free byte, as a runaway log would."""
    with open(os.path.join(folder, "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _saved(b, n):
    """Ask Mosquitto to save now (SIGUSR1) and wait for its n-th save to be told in its log."""
    b.mosq.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while b.mosq.log().count("Saving in-memory database") < n:
        assert time.monotonic() < deadline, b.mosq.log()
        time.sleep(0.05)
    time.sleep(0.3)  # the save itself, after its log line


def test_a_full_disk_loses_neither_the_database_nor_the_state_at_a_restart(broker):
    db = broker.mosq.persistence_file()
    data = os.path.dirname(db)
    broker.mosq.stop()
    with small_disk(data):
        try:
            broker.mosq.reserve = 256 << 10  # the guard's room for the last save, on this 1 MB disk
            broker.mosq.start()
            assert os.path.getsize(db + ".reserve") == 256 << 10
            w = broker.witness()
            w.publish("maison/salon/led/set", b"1", retain=True)
            saves = broker.mosq.log().count("Saving in-memory database")
            _saved(broker, saves + 1)
            _fill(data)  # something else fills the disk
            w.publish("maison/salon/led/set", b"0", retain=True)  # the state after that
            for i in range(40):
                w.publish("maison/room%d/led/set" % i, b"x" * 1000, retain=True)
            _saved(broker, saves + 2)
            assert "Error: No space left on device" in broker.mosq.log()  # the autosave fails
            assert dbguard.problem(open(db, "rb").read()) is None  # the last good save is kept whole
            broker.mosq.stop()  # the guard frees its room: the save at the stop succeeds
            broker.mosq.start()
            assert not os.path.exists(db + ".new")
            assert _retained(broker, "maison/salon/led/set") == b"0"
            assert _retained(broker, "maison/room39/led/set") == b"x" * 1000
        finally:
            broker.mosq.stop()


def test_a_failed_saves_leftover_is_removed_before_a_start(tmp_path, capsys):
    db = str(tmp_path / "mosquitto.db")
    with open(db + ".new", "wb") as f:
        f.write(b"\0" * 1000)
    dbguard.prepare(db, reserve=4096)
    assert not os.path.exists(db + ".new") and os.path.getsize(db + ".reserve") == 4096
    assert "was a save that did not finish (a full disk?): removed" in capsys.readouterr().err
    dbguard.release(db)
    assert not os.path.exists(db + ".reserve")
