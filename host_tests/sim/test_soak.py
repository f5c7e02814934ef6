"""make soak keeps working (a short run; the real one is an hour).

A short run of make soak, so the soak itself stays working (the real one is an hour)."""
import io

from nodekit.sim import simnode, soak


def test_short_soak_loses_nothing():
    runtime = "micropython" if simnode.micropython_path() else "cpython"
    out = io.StringIO()
    ok, checks = soak.run(30, runtime, seed=7, out=out)
    assert ok, out.getvalue()
