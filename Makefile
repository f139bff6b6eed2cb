# Quick start: `make demo` and `make test` (each sets up .venv, installs, builds the simulator).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nm-installed
SOURCES := pyproject.toml CMakeLists.txt $(wildcard target/csrc/*)

.PHONY: demo test bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(SOURCES) | $(PY)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nm_tvm.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/sim_speed.py

clean:
	rm -rf build $(VENV)
