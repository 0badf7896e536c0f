# The two commands of the README:
#   make demo   set everything up and run the main job on the embedded default
#   make test   set everything up and run the tests
# and `make check` (ruff and mypy), which CI runs before the tests.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q -c constraints.txt

.PHONY: setup check test demo bench

setup:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; fi
	@# torch first, from the constraints file: nothing may pull a newer build with CUDA.
	$(PIP) torch
	$(PIP) -e ".[test]"

check: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	.ci/typecheck

test: setup
	$(PYTHON) -m pytest

demo: setup
	$(PYTHON) -m partsbin demo

bench: setup
	$(PYTHON) bench/registry_bench.py
