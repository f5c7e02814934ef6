import sys

from nodekit.sim.simnode import main

sys.exit(main())
