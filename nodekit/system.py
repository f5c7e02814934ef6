"""Check the system programs the project needs; install them with apt-get when root.

Runs with the system's python3 before the virtualenv exists (standard library only).
"""
import os
import shutil
import subprocess
import sys

# program -> Debian package
NEEDED = {"mosquitto": "mosquitto", "mosquitto_pub": "mosquitto-clients",
          "mosquitto_sub": "mosquitto-clients", "socat": "socat", "tshark": "tshark",
          # the dashboard: built with Node.js (make dashboard), tested in Chromium
          "node": "nodejs", "npm": "npm", "chromium": "chromium",
          # a real NTP server for the clock tests (each runs its own chronyd -x on a free port)
          "chronyd": "chrony"}


def _has(prog):
    return shutil.which(prog) or os.path.exists("/usr/sbin/" + prog)


def _venv_ok():
    r = subprocess.run([sys.executable, "-c", "import ensurepip, venv"], capture_output=True)
    return r.returncode == 0


def missing():
    pkgs = sorted({pkg for prog, pkg in NEEDED.items() if not _has(prog)})
    if not _venv_ok():
        pkgs.append("python3-venv")
    return pkgs


def main():
    pkgs = missing()
    if not pkgs:
        return 0
    cmd = "apt-get update && apt-get install -y " + " ".join(pkgs)
    if os.geteuid() != 0:
        print("system: missing packages: %s\nsystem: run:  sudo sh -c '%s'" % (" ".join(pkgs), cmd),
              file=sys.stderr)
        return 1
    print("system: installing %s" % " ".join(pkgs))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["sh", "-c", cmd], env=env)
    if r.returncode or missing():
        print("system: apt-get could not install %s" % " ".join(missing()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
