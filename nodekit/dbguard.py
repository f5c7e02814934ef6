#!/usr/bin/env python3
"""Move a corrupt Mosquitto persistence file aside so the broker still starts.

A power cut while Mosquitto saves can leave mosquitto.db truncated or zeroed,
and Mosquitto 2 then refuses to start ("Unable to restore persistent database").
Run before Mosquitto (make broker-install adds it as ExecStartPre): it walks the
file's chunk structure and, if it does not hold together, renames the file to
mosquitto.db.corrupt-<time> and says so. The retained messages and queued
sessions in it are lost; the broker comes back. Standard library only.

    mosquitto-db-guard /var/lib/mosquitto/mosquitto.db
"""
import os
import struct
import sys
import time

MAGIC = b"\x00\xb5\x00mosquitto db"
_HEADER = len(MAGIC) + 8   # magic, crc (unused), format version
_CHUNK = 8                 # type, length: big-endian uint32 each
_KNOWN_TYPES = range(1, 16)


def problem(data):
    """None if the file holds together, else what is wrong with it."""
    if not data:
        return None  # Mosquitto starts on an empty file (it warns)
    if len(data) < _HEADER or not data.startswith(MAGIC):
        return "not a Mosquitto database (bad header)"
    version = struct.unpack_from(">I", data, len(MAGIC) + 4)[0]
    if not 2 <= version <= 6:
        return "unknown database version %d" % version
    pos = _HEADER
    while pos < len(data):
        if pos + _CHUNK > len(data):
            return "truncated at byte %d" % pos
        kind, length = struct.unpack_from(">II", data, pos)
        if kind not in _KNOWN_TYPES:
            return "unknown chunk type %d at byte %d" % (kind, pos)
        pos += _CHUNK + length
        if pos > len(data):
            return "truncated chunk ending past byte %d" % len(data)
    return None


def guard(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    why = problem(data)
    if why:
        aside = "%s.corrupt-%s" % (path, time.strftime("%Y%m%d-%H%M%S"))
        os.replace(path, aside)
        print("mosquitto-db-guard: %s was corrupt (%s); moved to %s so the broker can start"
              % (path, why, aside), file=sys.stderr)
    return why


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: mosquitto-db-guard /var/lib/mosquitto/mosquitto.db", file=sys.stderr)
        sys.exit(2)
    guard(sys.argv[1])
