"""PC side of the node project: the simulated board, the broker kit and the tools."""
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
