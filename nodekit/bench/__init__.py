"""make bench: the node's figures, measured against a real Mosquitto (not part of make test).

    __main__.py  the whole run (python -m nodekit.bench): the table, results.json, the plots
    rig.py       the broker kit, the simulated boards and tshark the measurements share
    latency.py   a command's way to the LED, in the board and seen from outside
    cadence.py   when each reading leaves, against the node's grid
    startup.py   from power-on to the first reading
    wire.py      what a reading costs on the wire
    memory.py    the smallest heap, the steady free heap, reconnects in a row, per board profile
    fleet.py     how many simulated nodes this machine sustains
    report.py    the table and the plots
"""
