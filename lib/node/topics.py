# The node's names on the broker, defined once. The board publishes and subscribes with
# them (app.py, session.py, homeassistant.py); the PC side takes them from here (the kit's
# accounts and ACL, the doctor, the bench, the tests), and a test holds the dashboard's
# page to them. What a room may be called is node/config.py's check_room().
# Imported while the node is built, then dropped (app.py): only the topics' bytes stay.
ROOT = "maison"      # maison/<room>/<leaf>, as in the tutorials
COMMAND = "ctrlled"  # every node's LED at once: mosquitto_pub -t ctrlled -m 1

# The leaves under maison/<room>/
VALUE = "valeur"     # the reading
SECOND = "humidite"  # a DHT's humidity, beside its temperature
STATUS = "status"    # online / offline (retained; offline is the Last Will)
LED = "led"          # the LED's state, 1 or 0 (retained)
STATS = "stats"      # health counters (JSON)
LED_SET = "led/set"  # a command for this node's LED alone

WRITES = (VALUE, SECOND, STATUS, LED, STATS)  # what a node publishes: all its account may write


def of(room, leaf):
    """maison/<room>/<leaf>."""
    return "%s/%s/%s" % (ROOT, room, leaf)


def reads(room):
    """What a node subscribes to: all its account may read."""
    return (COMMAND, of(room, LED_SET))
