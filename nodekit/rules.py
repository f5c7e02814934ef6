"""The board code's own rules, as the PC tools take them (the board side owns them):

- a node's config.json checked by the node's own validation (lib/node/config.py), so
  `make flash`, `make deploy`, `make doctor` and the board say the same thing about one file;
- the names on the broker (lib/node/topics.py: `topics.VALUE % room`), from which
  the kit writes each account's ACL and the doctor and the bench know what to look at;
- what a room may be called (node/config.py check_room) and Home Assistant's ids for it;
- the chips and the port whose rules a board profile follows (firmware/boards.json)."""
import os
import sys

from nodekit import REPO

if str(REPO / "lib") not in sys.path:
    sys.path.insert(0, str(REPO / "lib"))
from node import config as node_config  # noqa: E402  (imports only json)
from node import homeassistant, topics  # noqa: E402,F401  (the topics, Home Assistant's ids)

ROOT = topics.VALUE.split("/", 1)[0]  # "maison": every node's own topics are under ROOT/<room>/


def reads(room):
    """What a node subscribes to (session.py): all its account may read."""
    return (topics.COMMAND, topics.LED_SET % room)


def platform_of(path):
    """The port ("esp8266", "esp32") whose rules the config's board follows; esp8266, the
    tutorials' board, when it names none or cannot be read (load() then says why)."""
    import json

    try:
        with open(path) as f:
            return platform_of_board(json.load(f).get("board"))
    except (OSError, ValueError, TypeError, AttributeError):
        return "esp8266"


def board_chip(board):
    """The chip whose port a board profile (firmware/boards.json) or chip name runs; ValueError
    naming the known ones if neither."""
    import json

    with open(REPO / "firmware" / "boards.json") as f:
        manifest = json.load(f)
    # The chips the images are for (the simulated board knows the same: host_tests/test_layout.py)
    chips = list(dict.fromkeys(image["chip"] for image in manifest["images"].values()))
    if board in chips:
        return board
    prof = manifest["boards"].get(board)
    if prof is None:
        raise ValueError("BOARD=%s: unknown board (profiles: %s; or a chip: %s)"
                         % (board, ", ".join(manifest["boards"]), ", ".join(chips)))
    return manifest["images"][prof["image"]]["chip"]


def platform_of_board(board):
    """The port whose rules a board profile or chip name (None: the tutorials' esp8266) follows."""
    try:
        chip = board_chip(board or "esp8266")
    except (ValueError, TypeError):
        chip = "esp8266"
    return "esp8266" if chip == "esp8266" else "esp32"


def check_file(path):
    """(checked config, [files the config names, relative to its folder]); ValueError if wrong."""
    cfg = node_config.load(str(path), platform_of(path))
    base = os.path.dirname(os.path.abspath(path))
    files = [f for f in (cfg["mqtt"]["tls"] or {}).values() if f]
    for f in files:
        if not os.path.isfile(os.path.join(base, f)):
            raise ValueError("config: %s names %s, which is not next to it" % (path, f))
    return cfg, files
