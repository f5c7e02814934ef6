"""The Pi's broker: everything its Mosquitto needs, made on a PC, installed on the Pi.

    kit.py         make broker / make node / make broker-try: the kit folder (CA, server
                   certificate, passwd, acl, mosquitto.conf, each node's config.json)
    settings.py    the kit's settings (kit.json over the defaults)
    certs.py       the private CA and the certificates it signs
    passwd.py      Mosquitto's password file lines
    install.py     make broker-install / broker-uninstall: beside the Pi's own set-up
    dbguard.py     the database guard run before every Mosquitto start (copied to the Pi)
    dashboard.py   make dashboard: the page's files in the kit
    pageserver.py  the page over HTTPS (copied to the Pi, the system's python3 only)
    mosquitto.py   a real Mosquitto started and stopped on a kit (make sim, the tests)

The topics and what each account may do on them come from the board code (nodekit/rules.py).
"""
