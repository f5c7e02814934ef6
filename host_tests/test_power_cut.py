"""A power cut on the Pi must not leave a broker that refuses to start."""
import os

import pytest

from nodekit import dbguard


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
