"""The PC side of the node project, one room per job a person has. Lowest first: a room
imports only rooms above it in this list (nodekit/layout.py checks it, host_tests/test_layout.py
holds it).

    errors.py   the one error the tools raise, printed one way (make flash: BOARD=esp99: ...)
    rules.py    the board code's own rules as the PC takes them: the config check, the
                topics and what each node may do on them, the room names, the chips
    system.py   the system packages a command needs (apt-get), before the virtualenv
    broker/     the Pi's broker: the kit (CA, certificates, passwords, ACL, mosquitto.conf),
                make broker-install, the database guard, the dashboard page and its server
    board/      a real board: umqtt.simple fetched, lib/ built to .mpy, make firmware/flash,
                make deploy/repl/logs
    sim/        the board on this PC: make sim (one node), NODES= (a fleet), make soak,
                make vboard, and the simulated board they run on (sim/simboard/)
    doctor.py   make doctor: why a node does not connect, from this PC
    bench/      make bench: the measured figures
    layout.py   this layout in figures (python -m nodekit.layout)
"""
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
