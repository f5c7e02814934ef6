#!/usr/bin/env python3
"""Keep Mosquitto's persistence file usable through power cuts and a full disk.

A power cut while Mosquitto saves can leave mosquitto.db truncated or zeroed,
and Mosquitto 2 then refuses to start ("Unable to restore persistent database").
Run before Mosquitto (make broker-install adds it as ExecStartPre): it walks the
file's chunk structure and, if it does not hold together, renames the file to
mosquitto.db.corrupt-<time> and says so. The retained messages and queued
sessions in it are lost; the broker comes back.

On a full disk Mosquitto's save fails half-way: it keeps the last good
mosquitto.db (it writes mosquitto.db.new, then renames it) but leaves the .new
behind, still filling the disk, and a restart would bring back that old state.
So before a start the guard removes a leftover .new and sets aside
mosquitto.db.reserve (8 MiB, or twice the database), and when the service stops
(ExecStop, before Mosquitto's last save) it frees that room: the state at the
stop is saved, whatever else filled the disk. Standard library only.

    mosquitto-db-guard /var/lib/mosquitto/mosquitto.db            (before a start)
    mosquitto-db-guard --release /var/lib/mosquitto/mosquitto.db  (before a stop)
"""
import errno
import os
import struct
import sys
import time

MAGIC = b"\x00\xb5\x00mosquitto db"
_HEADER = len(MAGIC) + 8   # magic, crc (unused), format version
_CHUNK = 8                 # type, length: big-endian uint32 each
_KNOWN_TYPES = range(1, 16)
RESERVE = 8 << 20          # bytes set aside for the save at a stop (the kit's database is far smaller)


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


def _say(text):
    print("mosquitto-db-guard: " + text, file=sys.stderr)


def prepare(path, reserve=RESERVE):
    """Before Mosquitto starts: a failed save's leftover removed, a corrupt file moved aside, the
    reserve made. Returns what was wrong with the database, or None."""
    leftover = path + ".new"
    if os.path.exists(leftover):
        os.remove(leftover)
        _say("%s was a save that did not finish (a full disk?): removed; %s is the last good save"
             % (leftover, path))
    why = guard(path)
    try:
        size = max(reserve, 2 * os.path.getsize(path))
    except FileNotFoundError:
        size = reserve
    spare = path + ".reserve"
    if os.path.exists(spare) and os.path.getsize(spare) >= size:
        return why
    try:
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        os.remove(spare)
        _say("only %d KB free beside %s: no room set aside for the save at the next stop; free some "
             "space (the broker's state may then not survive a restart)" % (_free(path) // 1024, path))
    return why


def release(path):
    """Before Mosquitto stops: free the reserve, so its last save has room."""
    try:
        os.remove(path + ".reserve")
    except FileNotFoundError:
        pass


def _free(path):
    st = os.statvfs(os.path.dirname(path) or ".")
    return st.f_bavail * st.f_frsize


if __name__ == "__main__":
    args = sys.argv[1:]
    stop = args[:1] == ["--release"]
    if stop:
        args = args[1:]
    if len(args) != 1:
        print("usage: mosquitto-db-guard [--release] /var/lib/mosquitto/mosquitto.db", file=sys.stderr)
        sys.exit(2)
    release(args[0]) if stop else prepare(args[0])
