"""On an ESP8266 with ROMFS firmware, the node runs from the ROM partition make deploy writes.

The simulated board (make sim, SimNode) running the node from a ROMFS image, laid out as
make deploy lays it on an ESP8266 with FLASH_2M_ROMFS firmware (nodekit.board.deploy.romfs_image)."""
import pytest

from nodekit.board import deploy
from nodekit.sim import simnode

VALUE = "maison/salon/valeur"


def decoy(tmp_path, name, package):
    """A folder whose `package` cannot load: the board must import it from the image, not from files."""
    d = tmp_path / name / package
    d.mkdir(parents=True)
    for f in ("__init__.py", "simple.py"):
        (d / f).write_text('raise ImportError("%s was imported from files")\n' % package)
    return str(tmp_path / name)


@pytest.mark.skipif(not simnode.micropython_path(), reason="the MicroPython VM is not available here")
def test_the_simulated_board_runs_the_node_from_a_romfs_image(broker, start_node, tmp_path):
    image = deploy.romfs_image(tmp_path / "node.romfs")
    cfg = broker.node_config("salon")
    w = broker.witness(VALUE)
    # lib/ (NODE_LIB), and where make sim finds umqtt.simple (NODE_PATH), hold modules that fail.
    env = {"SIMBOARD_ROMFS": str(image), "NODE_LIB": decoy(tmp_path, "lib", "node"),
           "NODE_PATH": decoy(tmp_path, "deps", "umqtt")}
    # The simulated board compiled, as the bench runs it (simnode.compile_simboard).
    node = start_node(cfg, "micropython", env=env, hardware=simnode.compile_simboard(tmp_path / "hw"))
    w.next(VALUE, timeout=30)
    node.wait_log(r"read  \S+ -> %s" % VALUE)
    assert "imported from files" not in node.log()


def test_under_cpython_a_romfs_image_is_refused_in_one_line(broker, start_node, tmp_path):
    image = deploy.romfs_image(tmp_path / "node.romfs")
    node = start_node(broker.node_config("salon"), "cpython", env={"SIMBOARD_ROMFS": str(image)})
    node.wait_log(r"simboard: SIMBOARD_ROMFS needs the MicroPython VM \(RUNTIME=micropython\): CPython has no "
                  r"vfs.VfsRom")
