# main.py: runs after boot.py. The node lives in lib/node/.
from node import app

app.main()
