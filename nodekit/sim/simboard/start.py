# Start a simulated board: the node's own boot.py then main.py, as a board does.
# Run by `micropython` (whose script folder, this one, comes first on sys.path,
# so machine.py and network.py here stand in for the hardware modules) or by
# CPython through nodekit.cpython_board. The board's filesystem is the current
# folder (config.json and the certificate files); the code comes from the repo.
#
# The import order is the port's: sys.path = ['', '.frozen', '/lib'] (py/runtime.c mp_init()
# makes ['', '.frozen'], then ports/esp32/main.c appends '/lib', ports/esp8266/main.c '/lib'
# and '/', the same folder as '' there),
# so a module the firmware freezes shadows the same name in /lib, and only a file at the
# filesystem root wins over it. Here: the hardware stand-ins first (built-ins on a board),
# then '' (the board's root: this folder, and NODE_PATH, where `make deploy` puts
# umqtt.simple), then the frozen stand-ins (frozen/, SIMBOARD_FROZEN), then /lib, or with
# SIMBOARD_ROMFS=<image> '/rom', '/rom/lib' instead (the image mounted there, read into the
# VM's heap first: add its size to -X heapsize).
import os
import sys

import _port

NO_MAIN_EXIT = 3  # main.py returned: on a board, this is the REPL prompt

_here = _port.__file__.rsplit("/", 1)[0]
_repo = os.getenv("NODE_REPO")
_root = [p for p in (os.getenv("NODE_PATH") or "").split(":") if p]
_frozen = [_here + "/frozen"] + [p for p in (os.getenv("SIMBOARD_FROZEN") or "").split(":") if p]
# NODE_LIB: a compiled lib/ (nodekit.build) instead of the repo's .py sources.
_lib = [os.getenv("NODE_LIB") or _repo + "/lib"]
sys.path[1:1] = [""] + _root + _frozen
_romfs = os.getenv("SIMBOARD_ROMFS")  # a ROMFS image (nodekit.deploy.romfs_image): the node from /rom
if _romfs:
    if sys.implementation.name != "micropython":
        raise SystemExit("simboard: SIMBOARD_ROMFS needs the MicroPython VM (RUNTIME=micropython): "
                         "CPython has no vfs.VfsRom")
    import _rom

    # Mounted as a FLASH_2M_ROMFS ESP8266 does at reset; /lib left off, as make deploy empties it.
    if not _rom._install(_romfs, 0):
        raise SystemExit("simboard: SIMBOARD_ROMFS=%s is not a ROMFS image" % _romfs)
    del _rom
else:
    sys.path.append(_lib[0])


_port.install()


def _run(name):
    with open(_repo + "/" + name) as f:
        src = f.read()
    exec(compile(src, name, "exec"), {"__name__": "__main__"})


_run("boot.py")
_run("main.py")
sys.exit(NO_MAIN_EXIT)
