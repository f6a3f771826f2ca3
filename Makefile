# Two commands do all set-up on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make demo   train CPO on Point-Circle through the ROS 2 graph (progress on screen, plots at the end)
#   make test   run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Each run its own DDS domain, discovery on this machine only: runs side by side never hear each other.
ROS_ENV := ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-$$(( ($$$$ % 100) + 1 ))} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
DEMO_ARGS ?=
# Test processes (pytest-xdist), three on 2 cores: most tests wait on node processes or a clock.
# Each takes its own slice of the run's DDS domains (test/conftest.py).
TEST_WORKERS ?= 3

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt requirements-dev.txt setup.py package.xml
	@# Off-screen OpenGL for pictures and videos of the MuJoCo scene (MUJOCO_GL=osmesa).
	@if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq libosmesa6 >/dev/null; \
	  else echo "note: libosmesa6 not installed (needs root); rendering videos will be unavailable"; fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-ros.txt -r requirements-dev.txt
	$(PY) -m pip install -q -e . --no-deps
	@# The example task package of docs/tasks.md (the tests use it): no network needed.
	$(PY) -m pip install -q --no-deps --no-build-isolation examples/corridor_task
	@touch $(STAMP)

demo: setup
	$(ROS_ENV) $(VENV)/bin/cpo-ros bringup circle_sim $(DEMO_ARGS)

test: setup
	$(ROS_ENV) $(PY) -m pytest test -q -p no:cacheprovider --durations=25 \
	  -n $(TEST_WORKERS) --dist worksteal

lint: setup
	$(PY) -m pytest test -q -m linter

bench: setup
	$(ROS_ENV) $(PY) bench/bench_train.py

clean:
	rm -rf $(VENV) build install log *.egg-info
