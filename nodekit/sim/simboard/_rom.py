# The ROM partition of a FLASH_2M_ROMFS ESP8266 (ESP8266_GENERIC/mpconfigvariant_FLASH_2M_ROMFS.mk:
# -DMICROPY_VFS_ROM=1), backed by a file. _install() makes this module the board's `vfs`: the
# VM's own (mount, umount, VfsRom...) plus rom_ioctl, as extmod/modvfs.c has it on that port,
# then mounts the partition at /rom as py/runtime.c's mp_init() does at every reset. Entered
# in sys.modules: `import vfs` looks there before the built-ins (py/builtinimport.c).
# MicroPython VM only (CPython has no VfsRom).
from vfs import *  # noqa: F401,F403 (the VM's vfs, passed through)
import sys as _sys

_PAGE = 4096  # FLASH_PAGE_SIZE, the erase unit (ports/esp8266/vfs_rom_ioctl.c)
_EINVAL = 22
_rom = None  # the partition: a memory-mapped flash region on the chip, a bytearray here
_file = None


def rom_ioctl(op, rom_id=0, arg=None, buf=None):
    # ports/esp8266/vfs_rom_ioctl.c, case by case: one segment, whatever rom_id says.
    if op == 1:  # GET_NUMBER_OF_SEGMENTS
        return 1
    if op == 2:  # GET_SEGMENT: a memoryview of the whole partition (320 KB), read in place
        return memoryview(_rom)
    if op == 3:  # WRITE_PREPARE(id, len): erase whole 4 KB sectors from the start up to len
        end = min((arg + _PAGE - 1) // _PAGE * _PAGE, len(_rom))
        ff = b"\xff" * _PAGE
        for i in range(0, end, _PAGE):
            _rom[i:i + _PAGE] = ff
        _save(0, end)
        return 4  # the minimum write size
    if op == 4:  # WRITE(id, offset, buf): NOR flash only clears bits, so write erased sectors
        n = min(len(buf), len(_rom) - arg)
        for i in range(n):
            _rom[arg + i] &= buf[i]
        _save(arg, arg + n)
        return 0
    return -_EINVAL  # WRITE_COMPLETE (5) and anything else: the port's default case


def _save(lo, hi):
    f = open(_file, "r+b")
    f.seek(lo)
    f.write(memoryview(_rom)[lo:hi])
    f.close()


def _install(path, size, before=None):
    """Read the partition from path (size bytes, or the file's size), register as vfs, mount
    it at /rom and put '/rom', '/rom/lib' on sys.path before `before` (else at the end)."""
    global _rom, _file
    import os

    _file = path
    # Allocated first, in one piece, so the rest of the heap is as the board's.
    _rom = bytearray(size or os.stat(path)[6])
    f = open(path, "rb")
    f.readinto(_rom)
    f.close()
    _sys.modules["vfs"] = _sys.modules[__name__]
    try:
        # extmod/vfs.c mp_vfs_mount_romfs_protected(): an erased partition (no ROMFS header,
        # OSError ENODEV) mounts nothing and leaves sys.path alone.
        mount(VfsRom(rom_ioctl(2, 0)), "/rom")  # noqa: F405
    except OSError:
        return False
    p = _sys.path
    i = p.index(before) if before in p else len(p)
    p[i:i] = ["/rom", "/rom/lib"]
    return True
