"""Check the system programs a command needs; install them with apt-get when root.

    python3 -m nodekit.system sim     what make sim needs: Mosquitto and its clients
    python3 -m nodekit.system dashboard   what make dashboard needs: Node.js and npm
    python3 -m nodekit.system test    what make test adds to both: tshark, socat, Chromium
    ... --dry-run                     say what would be installed, install nothing

Runs with the system's python3 before the virtualenv exists (standard library only).
Packages come without their recommends, and a daemon a package brings (Debian starts
and enables mosquitto.service on install) is neither started nor left enabled: the
project starts its own Mosquitto on free ports, and a PC gets no broker on 1883 as a
side effect.
"""
import os
import shutil
import subprocess
import sys

# program -> Debian package, per command
NEEDED = {
    "sim": {"mosquitto": "mosquitto", "mosquitto_pub": "mosquitto-clients", "mosquitto_sub": "mosquitto-clients"},
    "dashboard": {"node": "nodejs", "npm": "npm"},  # make dashboard builds the page with Node.js
    # the wire tests' capture and relay, and the browser the dashboard is tested in
    "test": {"socat": "socat", "tshark": "tshark", "chromium": "chromium"},
}
NEEDED["test"] = dict(NEEDED["sim"], **NEEDED["dashboard"], **NEEDED["test"])
# Not installed here: chrony replaces Debian's systemd-timesyncd, the PC's own time keeper. The
# clock tests run their own chronyd on a free port when it is there and are skipped otherwise
# (.ci/run installs it).
SERVICES = {"mosquitto": "mosquitto.service"}  # package -> the unit Debian enables on install
# Debian's way to keep maintainer scripts from starting daemons during an install (invoke-rc.d)
POLICY_RC_D = "/usr/sbin/policy-rc.d"


def _has(prog):
    return shutil.which(prog) or os.path.exists("/usr/sbin/" + prog)


def _venv_ok():
    r = subprocess.run([sys.executable, "-c", "import ensurepip, venv"], capture_output=True)
    return r.returncode == 0


def missing(what):
    pkgs = sorted({pkg for prog, pkg in NEEDED[what].items() if not _has(prog)})
    if not _venv_ok():
        pkgs.append("python3-venv")
    return pkgs


def apt_command(pkgs):
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(pkgs)


def _weight(pkgs):
    """'; N packages, X MB on disk' as apt-get's simulation resolves them, or '' without apt."""
    import re

    try:
        r = subprocess.run(["apt-get", "-s", "install", "--no-install-recommends"] + pkgs,
                           capture_output=True, text=True, timeout=60)
        inst = re.findall(r"^Inst (\S+)", r.stdout, re.M)
        show = subprocess.run(["apt-cache", "show", "--no-all-versions"] + inst, capture_output=True, text=True,
                              timeout=60).stdout if inst else ""
    except (OSError, subprocess.SubprocessError):
        return ""
    kb = sum(int(n) for n in re.findall(r"^Installed-Size: (\d+)", show, re.M))
    return "; with their dependencies %d packages, %.1f MB on disk" % (len(inst), kb / 1024) if inst else ""


def _install(pkgs):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    own_policy = not os.path.exists(POLICY_RC_D)
    if own_policy:
        with open(POLICY_RC_D, "w") as f:
            f.write("#!/bin/sh\n# nodekit.system: no daemon started while packages install\nexit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
    try:
        r = subprocess.run(["sh", "-c", apt_command(pkgs)], env=env)
    finally:
        if own_policy:
            os.unlink(POLICY_RC_D)
    for pkg in pkgs:
        if pkg in SERVICES and shutil.which("systemctl"):
            # Enabled by the package's postinst: left as it was before (off), on a PC as on the Pi,
            # where make broker-install enables it on purpose.
            subprocess.run(["systemctl", "disable", "--now", SERVICES[pkg]], capture_output=True)
    return r.returncode


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    what = argv[0] if argv and argv[0] in NEEDED else "sim"
    pkgs = missing(what)
    if not pkgs:
        return 0
    if "--dry-run" in argv:
        print("system: make %s would install %s (%s)%s" % (what, " ".join(pkgs), apt_command(pkgs), _weight(pkgs)))
        return 0
    if os.geteuid() != 0:
        # Through this module as root, not a bare apt-get line: that would start and enable
        # Debian's own Mosquitto on 1883.
        print("system: missing packages: %s\nsystem: run:  sudo python3 -m nodekit.system %s   (no recommends; "
              "no daemon started or enabled)" % (" ".join(pkgs), what), file=sys.stderr)
        return 1
    print("system: installing %s (no recommends; no daemon started or enabled)" % " ".join(pkgs), flush=True)
    if _install(pkgs) or missing(what):
        print("system: apt-get could not install %s" % " ".join(missing(what)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
