# The node project. Two commands matter most:
#   make sim    run a node on this PC against a real Mosquitto
#   make test   the whole test suite (a few minutes)
# Everything else is listed by `make help`.

PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
RUNTIME ?= cpython
CONFIG  ?=
OUT     ?= kit
BROKER_HOST ?=
BROKER_IPS  ?=
PORT    ?= 8883
# PORT names the broker's port for `make broker` and the board's serial port for flash/deploy:
# SERIAL is PORT only when the user gave it.
SERIAL  := $(if $(filter command line environment,$(origin PORT)),$(PORT))
BOARD   ?=
WS_PORT ?= 9001
ROOM    ?=
PYTEST_ARGS ?=
TEST_JOBS ?= 3

.PHONY: help setup system system-dashboard system-test sim test broker broker-try node doctor broker-install broker-uninstall soak clean firmware flash bench dashboard

help:
	@echo "make sim [RUNTIME=cpython|micropython] [CONFIG=path/config.json] [BOARD=esp8266|esp32|huzzah...] [SENSOR=dht22|dht11|ds18b20]   run a node on this PC"
	@echo "make sim NODES=200 [CONFIG=...]             a fleet of simulated nodes against one broker"
	@echo "make test                                   run every test"
	@echo "make broker BROKER_HOST=raspberrypi.local OUT=kit   write the Pi's broker kit"
	@echo "sudo make broker-install OUT=kit [DRY_RUN=1|ROOT=folder]   install it beside the Pi's own Mosquitto set-up"
	@echo "sudo make broker-uninstall                  put the Pi back as it was"
	@echo "make broker-try OUT=kit                     run the kit's Mosquitto on this PC (try the Pi's set-up)"
	@echo "make node ROOM=salon OUT=kit [SENSOR=dht22|dht11|ds18b20|adc]   add a node to the kit, write its config.json"
	@echo "make doctor CONFIG=path/config.json         check everything a node meets with that config"
	@echo "make dashboard OUT=kit                      build the browser dashboard, put it in the kit"
	@echo "make firmware BOARD=esp32                   download a MicroPython image, check it, pin its sha256"
	@echo "make flash [BOARD=huzzah] PORT=/dev/ttyUSB0 [CONFIG=...] [IMAGE=file.bin] [DRY_RUN=1]   bare board -> reporting node"
	@echo "make deploy PORT=/dev/ttyUSB0 [CONFIG=...] [PY=1] [MIP=1]   update a board running MicroPython (what changed)"
	@echo "make repl PORT=/dev/ttyUSB0                 the board's REPL (Ctrl-] leaves)"
	@echo "make logs PORT=/dev/ttyUSB0 [RESET=1]       follow what the node prints (RESET=1: from its start)"
	@echo "make vboard [VBOARD=.vboard] [HEAP=64k] [BOARD=esp8266]   a virtual board (MicroPython VM) on VBOARD/port, for make deploy"
	@echo "make setup                                  system packages, virtualenv, umqtt.simple"
	@echo "make bench [QUICK=1]                        measure latency, cadence, start-up, memory, bytes, fleet (as root)"

# System packages, per command (nodekit/system.py): installed with apt-get as root (no recommends, no
# daemon started or enabled), else the command is printed. make sim: Mosquitto and its clients only.
system:
	@$(PYTHON) -m nodekit.system sim
system-dashboard:
	@$(PYTHON) -m nodekit.system dashboard
system-test:
	@$(PYTHON) -m nodekit.system test

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements.txt
	touch $@

# What only the tests and the bench use (pytest, hypothesis, playwright, matplotlib): not for make sim.
$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(VPY) -m pip install --quiet -r requirements-test.txt
	touch $@

.deps/umqtt/simple.py: nodekit/board/deps.py | $(VENV)/.installed
	$(VPY) -m nodekit.board.deps

setup: system $(VENV)/.installed .deps/umqtt/simple.py

sim: setup
	@$(VPY) -m $(if $(NODES),nodekit.sim.fleet --nodes $(NODES),nodekit.sim.simnode) --runtime $(RUNTIME) $(if $(CONFIG),--config $(CONFIG)) \
	  $(if $(NODES),,$(if $(BOARD),--board $(BOARD)) $(if $(SENSOR),--sensor $(SENSOR)))

test: setup system-test $(VENV)/.installed-test dashboard/dist/index.html
	$(VPY) -m pytest -n $(TEST_JOBS) host_tests $(PYTEST_ARGS)

# Kit options: TOOLS_PORT=8884 (TLS for the PC's tools, Home Assistant, mosquitto_sub), CLIENT_CERTS=1 (require_certificate), KEY_TYPE=ec, WS_TLS=0, HTTP_PORT=9080 (the
# dashboard page over HTTPS when WS_TLS=1, nodekit/broker/pageserver.py; 0: none), LOCAL_PORT=0 (no
# localhost plaintext listener), RENEW=1 (new server certificate, same CA), NEW_CA=1,
# a bridge: BRIDGE_HOST= BRIDGE_CA= [BRIDGE_PORT=8883 BRIDGE_USER= BRIDGE_PASSWORD_FILE=], NO_BRIDGE=1.
broker: $(VENV)/.installed
	@$(VPY) -m nodekit.broker.kit broker --out $(OUT) $(if $(BROKER_HOST),--host $(BROKER_HOST)) --ips "$(BROKER_IPS)" \
	  --port $(PORT) --ws-port $(WS_PORT) $(if $(TOOLS_PORT),--tools-port $(TOOLS_PORT)) \
	  $(if $(CLIENT_CERTS),--client-certs $(CLIENT_CERTS)) $(if $(KEY_TYPE),--key-type $(KEY_TYPE)) \
	  $(if $(WS_TLS),--ws-tls $(WS_TLS)) $(if $(LOCAL_PORT),--local-port $(LOCAL_PORT)) \
	  $(if $(HTTP_PORT),--http-port $(HTTP_PORT)) \
	  $(if $(filter 1,$(RENEW)),--renew) $(if $(filter 1,$(NEW_CA)),--new-ca) \
	  $(if $(BRIDGE_HOST),--bridge-host $(BRIDGE_HOST)) $(if $(BRIDGE_PORT),--bridge-port $(BRIDGE_PORT)) \
	  $(if $(BRIDGE_CA),--bridge-ca $(BRIDGE_CA)) $(if $(BRIDGE_USER),--bridge-user $(BRIDGE_USER)) \
	  $(if $(BRIDGE_PASSWORD_FILE),--bridge-password-file $(BRIDGE_PASSWORD_FILE)) \
	  $(if $(filter 1,$(NO_BRIDGE)),--no-bridge)

# The browser dashboard: npm packages from the registry (dashboard/package-lock.json) bundled by
# esbuild into dashboard/dist (not committed), then copied into the kit's www/ that Mosquitto serves.
DASHBOARD_PAGE := dashboard/dist/index.html
dashboard/node_modules/.package-lock.json: dashboard/package.json dashboard/package-lock.json | system-dashboard
	cd dashboard && npm ci --no-audit --no-fund
$(DASHBOARD_PAGE): dashboard/node_modules/.package-lock.json dashboard/build.mjs $(wildcard dashboard/src/*)
	cd dashboard && node build.mjs

dashboard: $(DASHBOARD_PAGE) $(VENV)/.installed
	$(VPY) -m nodekit.broker.dashboard --out $(OUT)

# The kit's Mosquitto on this machine, in the foreground (its ports checked first): try the Pi's set-up on a PC.
broker-try: $(VENV)/.installed
	@$(VPY) -m nodekit.broker.kit try --out $(OUT)

# On the Pi, as root: install the kit beside the Pi's own Mosquitto set-up and restart Mosquitto.
# DRY_RUN=1: list what would change, change nothing. ROOT=folder: a trial into that folder
# (nothing restarted). broker-uninstall: put the Pi back as it was before the install.
broker-install: $(VENV)/.installed
	$(VPY) -m nodekit.broker.install --out "$(OUT)" $(if $(ROOT),--root "$(ROOT)") $(if $(filter 1,$(DRY_RUN)),--dry-run)

broker-uninstall: $(VENV)/.installed
	$(VPY) -m nodekit.broker.install --undo $(if $(ROOT),--root "$(ROOT)")

node: $(VENV)/.installed
	@test -n "$(ROOM)" || { echo "make node: give the room, e.g. make node ROOM=salon OUT=$(OUT)"; exit 2; }
	$(VPY) -m nodekit.broker.kit node --out "$(OUT)" --room '$(subst ','\'',$(value ROOM))' $(if $(BOARD),--board "$(BOARD)") $(if $(SENSOR),--sensor "$(SENSOR)")

doctor: $(VENV)/.installed .deps/umqtt/simple.py
	@test -n "$(CONFIG)" || { echo "make doctor: give the node's config, e.g. make doctor CONFIG=kit/nodes/salon/config.json"; exit 2; }
	$(VPY) -m nodekit.doctor --config $(CONFIG)

# Boards: firmware/boards.json. An image comes over HTTPS, is checked by esptool and its sha256 pinned
# in firmware/images/pins.json at its first download; a later one that differs is refused.
# SHA256=<hash> checks against that hash (and pins it); IMAGE=file flashes a local image, checked the same way.
firmware: $(VENV)/.installed
	$(VPY) -m nodekit.board.flash firmware --board "$(BOARD)" $(if $(SHA256),--sha256 $(SHA256))

flash: setup
	@$(VPY) -m nodekit.board.flash flash --board "$(BOARD)" --port "$(SERIAL)" --config "$(or $(CONFIG),config.json)" \
	  $(if $(SHA256),--sha256 $(SHA256)) $(if $(IMAGE),--image $(IMAGE)) $(if $(BAUD),--baud $(BAUD)) \
	  $(if $(filter 1,$(DRY_RUN)),--dry-run)

# A board already running MicroPython (nodekit/board/deploy.py): .mpy for its MicroPython, only what changed,
# through safe mode. PY=1: lib/ as .py sources; MIP=1: umqtt.simple from micropython-lib (mpremote mip).
.PHONY: deploy repl logs vboard
deploy: $(VENV)/.installed .deps/umqtt/simple.py
	@$(VPY) -m nodekit.board.deploy --port "$(SERIAL)" --config "$(or $(CONFIG),config.json)" \
	  $(if $(filter 1,$(PY)),--py) $(if $(filter 1,$(MIP)),--mip)

repl: $(VENV)/.installed
	$(VPY) -m nodekit.board.deploy repl --port "$(SERIAL)"

logs: $(VENV)/.installed
	$(VPY) -m nodekit.board.deploy logs --port "$(SERIAL)" $(if $(filter 1,$(RESET)),--reset)

# The MicroPython VM behind a pseudo-terminal: VBOARD/port, VBOARD/fs (its files), VBOARD/hw (pins, Wi-Fi).
vboard: $(VENV)/.installed
	$(VPY) -m nodekit.sim.vboard --dir "$(or $(VBOARD),.vboard)" $(if $(HEAP),--heap $(HEAP)) $(if $(BOARD),--board $(BOARD))

# One node for DURATION seconds with faults injected at random (not part of make test).
DURATION ?= 3600
soak: setup
	$(VPY) -m nodekit.sim.soak --duration $(DURATION) --runtime $(if $(filter cpython,$(RUNTIME)),cpython,micropython)

# Figures against a real Mosquitto (about 12 minutes; QUICK=1: tiny sizes, into bench/quick/): bench/results.json,
# bench/results.md, bench/*.png and the table on screen. Not part of make test.
bench: setup $(VENV)/.installed-test
	$(VPY) -m nodekit.bench $(if $(filter 1,$(QUICK)),--quick)

clean:
	rm -rf .sim build .pytest_cache dashboard/dist
