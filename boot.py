# boot.py: runs first at every reset. Keep it tiny: a mistake here locks out the REPL.
import gc

try:
    import esp

    esp.osdebug(None)  # keep the vendor's debug output off the REPL's UART
except ImportError:
    pass
gc.collect()
