"""The one error the PC tools raise for what a person can fix, and the one way it is printed.

As mpremote does: `make flash: BOARD=esp99: unknown board (known: ...)` on stderr, exit 1, no
traceback (DEBUG=1 shows it). A Failure names the thing that is wrong (a setting such as
BOARD=, a file, a port) and says why and what to do; anything else is a bug and keeps its
traceback.
"""
import os
import sys


class Failure(Exception):
    """Failure(what, why): `what` is the thing that is wrong, `why` the cause and the fix.
    Failure(text) when the text already starts with the thing."""

    def __init__(self, what, why=None):
        super().__init__(what if why is None else "%s: %s" % (what, why))


def report(command, e):
    """Print e, caught by COMMAND's handler ("make flash"), as its one line; return the exit code 1.
    An OSError (a file or a port that is not there) reads as a Failure: what, then why."""
    if os.environ.get("DEBUG"):
        raise  # the exception being handled, with its traceback
    if isinstance(e, OSError) and e.strerror:  # not "[Errno 2] ..."
        text = "%s: %s" % (e.filename, e.strerror) if e.filename else e.strerror
    else:
        text = str(e)
    print("%s: %s" % (command, text), file=sys.stderr)
    return 1


def run(command, main, argv=None):  # for a tool with one command
    """main(argv), a Failure or an OSError that escapes it printed by report()."""
    try:
        return main(argv)
    except (Failure, OSError) as e:
        return report(command, e)
