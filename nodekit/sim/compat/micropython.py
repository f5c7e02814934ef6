"""CPython stand-in for MicroPython's `micropython` module."""


def const(value):
    return value


def opt_level(level=None):
    return 0


def mem_info(verbose=False):
    print("mem_info: not available under CPython")


def alloc_emergency_exception_buf(size):
    pass
