# The node's names on the broker, defined once. The board publishes and subscribes with
# them (app.py, session.py, homeassistant.py); the PC side takes them from here through
# nodekit/rules.py (the kit's accounts and ACL, the doctor, the bench, the tests), and a test
# holds the dashboard's to them. What a room may be called is config.py's check_room().
# Few names, and formats longer than 10 characters, which MicroPython does not intern: each
# interned name is heap for good, and the node is a few names short of a qstr pool doubling
# before its first TLS handshake (host_tests/node/test_memory.py says how many). Imported while the node is built, then
# dropped (app.py): only the topics' bytes stay.
COMMAND = "ctrlled"  # every node's LED at once: mosquitto_pub -t ctrlled -m 1

# A node's own topics, each % its room:
VALUE = "maison/%s/valeur"     # the reading
SECOND = "maison/%s/humidite"  # a DHT's humidity, beside its temperature
STATUS = "maison/%s/status"    # online / offline, retained (offline: the Last Will)
LED = "maison/%s/led"          # the LED's state, 1 or 0, retained
STATS = "maison/%s/stats"      # health counters, JSON
LED_SET = "maison/%s/led/set"  # a command for this node's LED alone

# What a node's account may write; it reads COMMAND and LED_SET (session.py subscribes to them).
WRITES = (VALUE, SECOND, STATUS, LED, STATS)
