# Leither for boards. `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run on both cores; a module's CPython and MicroPython runs stay on one worker.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: all deps venv build standin test test-fast mptest heap-margin fuzz bench demo lint clean

all: test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# System packages the network tests and benchmarks drive (only where we are root and apt exists).
deps:
	@bash ci/system-deps.sh

build: $(STAMP)
	$(BIN)/leither build --board unix

# The ESP32 bundle and its 32-bit stand-in MicroPython (firmware frozen in, build/standin/esp32/),
# from ../shared/micropython or $LEITHER_MICROPYTHON_SRC; without source or gcc-multilib it says
# why and the tests needing it skip.
standin: $(STAMP)
	$(BIN)/leither build --board esp32

test: $(STAMP) deps build standin
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests

test-fast: $(STAMP) build
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow and not root" tests

# One firmware test module straight under MicroPython: make mptest T=test_cbor [HEAP=64K]
HEAP ?= 64K
mptest: $(STAMP) build
	$(BIN)/python -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.build_for_micropython()"
	MICROPYPATH=build/tests/firmware:build/unix:.frozen $(BIN)/micropython -X heapsize=$(HEAP) tests/mp_run.py $(T)

# Each firmware test module's smallest passing MicroPython heap against the one it declares.
heap-margin: $(STAMP) build
	$(BIN)/python ci/mp_heap_margin.py $(T)

fuzz: $(STAMP) build
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest -q -k fuzz tests

bench: $(STAMP) deps build standin
	for b in primitives store db node discovery rpc ledger pairing backup pizero; do \
	    [ -f bench/$$b.py ] && $(BIN)/python bench/$$b.py || true; done

demo: $(STAMP) deps build standin
	$(BIN)/leither demo

lint: $(STAMP)
	$(BIN)/ruff check firmware host_tools tests bench
	$(BIN)/mypy

clean:
	rm -rf build
