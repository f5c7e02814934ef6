# Start a simulated board: the node's own boot.py then main.py, as a board does.
# Run by `micropython` (whose script folder, this one, comes first on sys.path,
# so machine.py and network.py here stand in for the hardware modules) or by
# CPython through nodekit.cpython_board. The board's filesystem is the current
# folder (config.json and the certificate files); the code comes from the repo.
import os
import sys

NO_MAIN_EXIT = 3  # main.py returned: on a board, this is the REPL prompt

_repo = os.getenv("NODE_REPO")
_extra = [p for p in (os.getenv("NODE_PATH") or "").split(":") if p]
# NODE_LIB: a compiled lib/ (nodekit.build) instead of the repo's .py sources.
for _p in [os.getenv("NODE_LIB") or _repo + "/lib"] + _extra:
    sys.path.insert(1, _p)


def _run(name):
    with open(_repo + "/" + name) as f:
        src = f.read()
    exec(compile(src, name, "exec"), {"__name__": "__main__"})


_run("boot.py")
_run("main.py")
sys.exit(NO_MAIN_EXIT)
