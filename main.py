# main.py: runs after boot.py. The node lives in lib/node/ (app.py holds its main loop).
# The SAFEMODE file is checked here, before anything is imported from lib/: `make deploy`
# keeps one on the board while it copies, so a half-updated lib/ is never started.
import os
import time

try:
    os.stat("SAFEMODE")
except OSError:
    from node import app

    app.main()
else:
    t = time.ticks_ms()
    print("%6d.%03d boot  safe mode: the SAFEMODE file is present (delete it and reset); "
          "node not started, REPL free" % (t // 1000, t % 1000))
