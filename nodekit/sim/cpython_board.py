"""Run the board files under CPython: MicroPython's runtime pieces, then the board.

Usage (normally through nodekit.sim.simnode): SIMBOARD_DIR=... NODE_REPO=... python -m nodekit.sim.cpython_board
"""
import os
import runpy
import sys

from nodekit import REPO
from nodekit.sim import compat


def main():
    compat.install()
    here = os.path.dirname(os.path.abspath(__file__))
    # compat first (micropython, usocket, ussl), then the simulated hardware.
    sys.path[0:1] = [os.path.join(here, "compat"), os.path.join(here, "simboard")]
    os.environ.setdefault("NODE_REPO", str(REPO))
    sys.argv = ["start.py"]
    try:
        runpy.run_path(os.path.join(here, "simboard", "start.py"), run_name="__main__")
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C: the simulator is stopping the board


if __name__ == "__main__":
    main()
