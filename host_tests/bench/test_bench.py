"""make bench still runs and reports figures it measured.

make bench on tiny sizes (--quick): it runs against a real Mosquitto, prints the table and
writes results.json, results.md and the plots, with figures it measured. The figures' goals
belong to make bench itself; here only their sanity is checked."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from nodekit import REPO
from nodekit.sim import simnode


@pytest.mark.timeout(300)
def test_bench_quick_measures_and_writes_everything(tmp_path):
    if os.geteuid() != 0 or not shutil.which("tshark"):
        pytest.skip("make bench captures on lo with tshark, as root")
    if not simnode.micropython_path():
        pytest.skip("the MicroPython VM is not available here")
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, "-m", "nodekit.bench", "--quick", "--no-fleet", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Command latency" in r.stdout and "Bytes on the wire" in r.stdout, r.stdout
    res = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().strip() in r.stdout
    for png in ("latency.png", "cadence.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    lat = {(x["client"], x["runtime"]): x for x in res["latency"]}
    assert set(lat) == {(c, rt) for c in ("node", "naive") for rt in ("cpython", "micropython")}
    for rt in ("cpython", "micropython"):
        node, naive = lat[("node", rt)], lat[("naive", rt)]
        assert node["a_ms"]["n"] == node["commands"] > 0 and node["b_ms"]["n"] == node["commands"]
        assert 0 < node["a_ms"]["p50"] <= node["a_ms"]["max"]
        # The node answers at once; the naive loop when its sleep ends.
        assert naive["b_ms"]["p50"] > node["b_ms"]["p50"] and naive["a_ms"]["p50"] > node["a_ms"]["p50"]
        assert res["latency_ratios"][rt]["b_p50"] >= 1

    for r in res["cadence"]["short"] + res["cadence"]["real"]:
        assert r["readings"] >= 5 and r["max_ms"] >= r["mean_ms"] >= 0 and len(r["series"]) == r["readings"]

    assert {(s["runtime"], s["code"], s["transport"]) for s in res["startup"]} >= {
        ("cpython", "py", "tls"), ("micropython", "mpy", "tls"), ("micropython", "py", "plain")}
    assert all(s["median_ms"] > 0 for s in res["startup"])

    heaps = {(m["client"], m["transport"]): m for m in res["memory"]["smallest"]}  # .mpy or ROMFS
    node, bare = heaps[("node", "plain")], heaps[("bare", "plain")]
    assert bare["heap"] and node["heap"] and node["heap"] > node["fails_at"] and bare["heap"] > bare["fails_at"]
    assert node["heap"] > bare["heap"]  # the node does more than connect and publish once
    md = (out / "results.md").read_text()
    assert "Memory per board profile" in md and "goal ESP8266" in md, md
    esp = res["memory"]["profiles"][0]
    assert esp["chip"] == "esp8266" and esp["residual"] > 0 and "started" in esp["rows"]["free-plain"]
    steady = res["memory"]["steady"]
    assert steady["alive"] and 0 < steady["in_use_first"] < steady["heap_total"]

    wire = {(w["transport"], w["client"], w["qos"]): w for w in res["wire"]}
    umqtt = wire[("tls", "umqtt.simple", 0)]
    assert umqtt["readings"] >= 1 and umqtt["segments"] >= 1 and umqtt["tls_records"] >= 1
    assert wire[("plain", "node", 0)]["bytes"] > 0
