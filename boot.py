# boot.py: runs first at every reset. Keep it tiny: a mistake here locks out the REPL.
import gc
import sys

# With ROMFS firmware sys.path is ['', '.frozen', '/rom', '/rom/lib', '/lib', '/'] (py/runtime.c,
# extmod/vfs.c): '/rom' moves up next to '' so the umqtt.simple `make deploy` put there wins over
# the firmware's frozen 1.7.0 (the node, in /rom/lib, has no frozen namesake).
if "/rom" in sys.path:
    sys.path.remove("/rom")
    sys.path.insert(sys.path.index("") + 1, "/rom")

try:
    import esp

    esp.osdebug(None)  # keep the vendor's debug output off the REPL's UART
except ImportError:
    pass
gc.collect()
