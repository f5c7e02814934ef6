"""make sim runs the node a person has: a config by any name, on the board profile they name."""
import subprocess
import sys

import pytest

from nodekit import REPO
from nodekit.errors import Failure
from nodekit.sim import simnode


def test_make_sim_takes_a_config_by_any_name_and_a_board(broker, tmp_path):
    named = tmp_path / "salon.json"
    cfg = broker.node_config("salon", period_s=0.5)
    named.write_text(cfg.read_text())
    (tmp_path / "ca.der").write_bytes((cfg.parent / "ca.der").read_bytes())
    w = broker.witness("maison/salon/valeur")
    p = subprocess.Popen([sys.executable, "-m", "nodekit.sim.simnode", "--config", str(named), "--board", "esp32"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        w.next("maison/salon/valeur", timeout=30)
    finally:
        p.terminate()
        try:
            out = p.communicate(timeout=15)[0].decode()
        except subprocess.TimeoutExpired:  # never left behind
            p.kill()
            out = p.communicate()[0].decode()
    assert "a simulated esp32 (MicroPython 1.28's esp32 port)" in out, out


def test_an_unknown_board_is_refused_in_one_line(tmp_path):
    with pytest.raises(Failure, match=r"BOARD=esp99: unknown board \(profiles: esp8266, huzzah"):
        simnode.board_chip("esp99")
