"""A real board: from a bare ESP8266/ESP32 to a reporting node.

    deps.py     umqtt.simple from PyPI, pinned and checked, into .deps/
    build.py    lib/ and umqtt.simple compiled to .mpy, as a board imports them
    flash.py    make firmware / make flash: the MicroPython image, checked, then the node
    deploy.py   make deploy / repl / logs: only what changed, through safe mode; the ROMFS image

A board's config is checked with the node's own rules (nodekit/rules.py) before anything is written.
"""
