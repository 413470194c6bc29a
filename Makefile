# Developer and CI entry points. `.ci/run` calls `make lint` and `make test`.
#
# The venv is (re)installed only when pyproject.toml changes (stamp file), so `lint`
# followed by `test` does not pip-install twice. The Kafka broker jars come from
# Maven Central via dev/local_kafka.py and are cached in .cache/kafka/.

SHELL := /bin/bash
.DEFAULT_GOAL := test

# The newest Python here that runs: 3.13 is the image's, and 3.12+ hands Faust's fetched records to
# the agents without extra tasks (streams/faust_fixes.py), about 1.5x the worker's throughput of 3.11.
# Probed once here (`?=` would probe again at every use); PYTHON=... on the command line or in the
# environment wins.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3.13 python3.12 python3.11,$(shell $(p) -c 'import sys' >/dev/null 2>&1 && echo $(p))) python3)
endif
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.signal-sync-installed
PYTEST_FLAGS ?= -q -p no:cacheprovider --timeout=600 --durations=15

.PHONY: setup registry tools test chaos fuzz lint demo bench kafka-start kafka-stop kafka-status

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

setup: $(STAMP)
	$(PY) dev/local_kafka.py fetch

# The Schema Registry the integration tests start (Apicurio Registry, from Maven, into .cache/).
registry: $(STAMP)
	$(PY) dev/schema_registry.py fetch

# Test-only tools: helm (built with go install, cached in .cache/bin) and Debian's chromium.
tools:
	bash dev/install_tools.sh
	bash dev/install_browser.sh

# Unit, integration, deploy, benchmark-smoke and fault-injection (tests/chaos, ~5 min) tests.
test: setup registry tools
	$(PY) -m pytest $(PYTEST_FLAGS) tests

chaos: setup
	$(PY) -m pytest $(PYTEST_FLAGS) tests/chaos

# The property tests (tests/property, part of `make test` with a small budget) with Hypothesis'
# `fuzz` profile: thousands of generated records per property, several minutes, no broker needed.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest $(PYTEST_FLAGS) --timeout=3600 --hypothesis-show-statistics tests/property

lint: $(STAMP)
	$(VENV)/bin/ruff check .

kafka-start: $(STAMP)
	$(PY) dev/local_kafka.py start

# stdlib only, so it works even without the venv
kafka-stop:
	$(PYTHON) dev/local_kafka.py stop

kafka-status:
	$(PYTHON) dev/local_kafka.py status

# Every scale target in one run (bench/targets.py, bench/README.md): the five variants side by side,
# paced latency, two workers and the 1M-contact memory and restart run, on this Python and on the
# oldest supported one (when python3.11 runs here, in $(OLDEST_VENV)); one summary JSON.
OLDEST_VENV := .venv-3.11
bench: setup
	$(PY) -m pip install --disable-pip-version-check -q -e '.[bench]'
	if python3.11 -c 'import sys' >/dev/null 2>&1; then \
	  [ -x $(OLDEST_VENV)/bin/python ] || python3.11 -m venv $(OLDEST_VENV); \
	  $(OLDEST_VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[test,bench]'; \
	fi
	$(PY) bench/targets.py --python $(PY) $$([ -x $(OLDEST_VENV)/bin/python ] && echo --python $(OLDEST_VENV)/bin/python)

# The end-to-end demo: local broker, sandbox Mautic/Mailgun, worker, seed events, outcomes printed.
demo: setup
	$(PY) dev/demo.py
