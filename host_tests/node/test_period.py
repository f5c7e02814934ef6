"""At the real default, a reading leaves every 5 s on a grid that does not drift."""
import time


def test_default_period_is_five_seconds(broker, start_node):
    cfg = broker.node_config()  # the kit's config keeps the default period_s: 5
    w = broker.witness("maison/salon/valeur")
    start_node(cfg, "cpython")
    times = [w.next("maison/salon/valeur", timeout=20)[3] for _ in range(4)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Generous bounds: this asserts the schedule, not the machine's timing (that is make bench).
    assert all(4.5 < g < 5.5 for g in gaps), gaps
    assert 14.5 < times[-1] - times[0] < 15.5
