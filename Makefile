# Two commands for a new user: `make run` and `make test`. Each sets up what is
# missing (virtualenv, Python packages, the Debian packages of the real peers).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= etc/phpvoip.yaml
# Debian packages of the real peers the interop tests talk to: command -> package.
PEERS  := sipp:sip-tester kamailio:kamailio baresip:baresip tshark:tshark ssh:openssh-client \
          svmap:sipvicious ip:iproute2 nft:nftables rtpengine:rtpengine-daemon \
          chromium:chromium chromedriver:chromium-driver

.PHONY: run test lint unit interop bench peers venv clean

run: venv
	mkdir -p var
	$(BIN)/twistd -n phpvoip --config $(CONFIG)

test: venv peers
	$(BIN)/ruff check phpvoip tests bench twisted examples
	$(BIN)/python -m pytest -q

unit: venv
	$(BIN)/python -m pytest -q tests/unit

interop: venv peers
	$(BIN)/python -m pytest -q tests/interop

lint: venv
	$(BIN)/ruff check phpvoip tests bench twisted examples

venv: $(VENV)/.installed

# A "compat" editable install puts the checkout itself on sys.path, so twistd finds
# twisted/plugins/phpvoip_plugin.py (a PEP 660 editable install hides it).
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,fuzz]' --config-settings editable_mode=compat
	touch $@

# Installs only what is missing; `apt-get update` runs once, before the first install.
# DEBIAN_FRONTEND is passed through sudo (which drops the caller's environment), so
# that wireshark-common's question (may non-root users capture?) takes its default, no.
peers:
	@missing=""; for pair in $(PEERS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing peers:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing baresip-core; \
	fi

# The bundled prompts in phpvoip/sounds/ (committed): espeak-ng + sox, or tones without them.
.PHONY: sounds
sounds: venv
	$(BIN)/python tools/make_sounds.py

bench: venv peers
	$(BIN)/python bench/parse.py
	PYTHON=$(BIN)/python bench/calls.sh
	PYTHON=$(BIN)/python bench/register.sh
	$(BIN)/python bench/ladder.py
	$(BIN)/python bench/pathological.py
	$(BIN)/python bench/fuzz.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis var
