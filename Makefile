# The README's two commands. Each sets itself up on a fresh machine (virtual environment, install)
# and then runs: `make demo` (the main job on the embedded default) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gemsight-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint bench install clean browser chain-services

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gemsight-demo $(DEMO_ARGS)

# The synthetic test model (tests/synthetic_model.py) is the suite's longest step: its build starts first, in the
# background, while the linter runs and the browser and chain services install; pytest then waits on its lock
# (or finds it cached) instead of starting it once everything else is ready.
test: $(STAMP)
	@mkdir -p .cache/test-model
	@$(PY) -m tests.synthetic_model > .cache/test-model/prebuild.log 2>&1 & echo $$! > .cache/test-model/prebuild.pid
	$(MAKE) --no-print-directory lint browser chain-services
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop: everything not marked slow (no trained test model, no training, no whole videos).
test-fast: $(STAMP) lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The linter the code is written for (pyproject.toml's [tool.ruff]); `make test` runs it first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The kiosk's page is tested in a real headless Chromium (Debian's chromium + chromium-driver).
# Installed here when missing (sudo when not root); in CI (CI=true) a failed install fails `make test`.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing chromium and chromium-driver for the kiosk's browser test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  if ! { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; }; then \
	    if [ "$$CI" = true ]; then echo "error: cannot install chromium (CI needs the browser test)"; exit 1; fi; \
	    echo "warning: chromium not installed: the kiosk's browser test will be skipped"; \
	  fi; \
	fi

# The chain's tests (tests/hq) run a real broker and database: Debian's mosquitto and postgresql, started by
# the tests themselves on temporary folders and free loopback ports (the packages' own services are not used).
chain-services:
	@if [ ! -x /usr/sbin/mosquitto ] || [ ! -x /usr/bin/mosquitto_passwd ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing mosquitto and postgresql for the chain's tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  if ! { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq mosquitto postgresql; }; then \
	    if [ "$$CI" = true ]; then echo "error: cannot install mosquitto and postgresql (CI needs the chain's tests)"; exit 1; fi; \
	    echo "warning: mosquitto/postgresql not installed: the chain's tests will be skipped"; \
	  fi; \
	fi

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) demo-out .cache
