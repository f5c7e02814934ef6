"""Fetch umqtt.simple from PyPI (pinned, checked by sha256) into .deps/.

PyPI's micropython-umqtt.simple is an sdist with no setup.py, so pip refuses
to install it; we take the one file we need out of the verified archive.
"""
import hashlib
import io
import sys
import tarfile
import urllib.request

from nodekit import REPO

UMQTT = {
    "version": "1.3.4",
    "url": "https://files.pythonhosted.org/packages/bd/cf/697e3418b2f44222b3e848078b1e33ee76aedca9b6c2430ca1b1aec1ce1d/"
           "micropython-umqtt.simple-1.3.4.tar.gz",
    "sha256": "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f",
    "member": "micropython-umqtt.simple-1.3.4/umqtt/simple.py",
}
DEPS = REPO / ".deps"
UMQTT_FILE = DEPS / "umqtt" / "simple.py"


def fetch_umqtt():
    stamp = DEPS / "umqtt" / ".sha256"
    if UMQTT_FILE.exists() and stamp.exists() and stamp.read_text().strip() == UMQTT["sha256"]:
        return UMQTT_FILE
    with urllib.request.urlopen(UMQTT["url"], timeout=60) as r:
        data = r.read()
    got = hashlib.sha256(data).hexdigest()
    if got != UMQTT["sha256"]:
        raise SystemExit("deps: umqtt.simple %s: sha256 %s, expected %s; not installed"
                         % (UMQTT["version"], got, UMQTT["sha256"]))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        src = tar.extractfile(UMQTT["member"]).read()
    UMQTT_FILE.parent.mkdir(parents=True, exist_ok=True)
    UMQTT_FILE.write_bytes(src)
    stamp.write_text(UMQTT["sha256"] + "\n")
    return UMQTT_FILE


if __name__ == "__main__":
    try:
        print("deps: umqtt.simple %s in %s" % (UMQTT["version"], fetch_umqtt().parent))
    except OSError as e:
        print("deps: cannot download umqtt.simple from PyPI: %s" % e, file=sys.stderr)
        sys.exit(1)
