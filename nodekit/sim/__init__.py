"""The board on this PC: the very board files against a real Mosquitto, before anyone owns a board.

    simnode.py        make sim: one node (CPython or the MicroPython VM) on a simulated board
    fleet.py          make sim NODES=N: many nodes against one broker
    soak.py           make soak: one node for hours, faults at random
    vboard.py         make vboard: the MicroPython VM behind a serial port, for make deploy
    cpython_board.py  how a node starts under CPython
    compat/           what MicroPython has and CPython lacks (ticks_*, const, stream sockets)
    simboard/         the simulated board: machine, network, the port's rules (each cited
                      from MicroPython's source) and the frozen drivers' stand-ins

    python -m nodekit.sim ...   is make sim (simnode.py)
"""
