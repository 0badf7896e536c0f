# The two commands of the README:
#   make demo   set everything up and run the main job on the embedded default
#   make test   set everything up and run the tests
PYTHON ?= python3

.PHONY: setup test demo bench

setup:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; fi
	@# torch first and pinned exactly: a range elsewhere would pull the newest build with CUDA.
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e ".[test]"

test: setup
	$(PYTHON) -m pytest

demo: setup
	$(PYTHON) -m partsbin.cli demo

bench: setup
	$(PYTHON) bench/registry_bench.py
