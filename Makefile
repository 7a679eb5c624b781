# disparo: `make demo` runs the product on its embedded defaults, `make test` runs every test.
# Both create (and then reuse) the virtual environment in .venv by themselves.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo
PYTEST_ARGS ?=
# the example third-party plugin (docs/plugins.md): installed beside disparo, its tests run
# with disparo's (pyproject.toml's testpaths); disparo's own tests keep it out (conftest.py)
EXAMPLE := examples/disparo-webhook
# pytest-xdist workers for `make test` (auto: one a CPU; 0 runs in this process)
PYTEST_WORKERS ?= auto

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml $(EXAMPLE)/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e '$(EXAMPLE)[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m engine.demo $(DEMO)

# Tests run in parallel (pytest-xdist); PYTEST_ARGS come after, so `-n 0` there runs serially.
# pytest exits 5 when it collects no tests: that is not a failure here. One run covers
# tests/ and the example plugin's tests (testpaths in pyproject.toml).
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m pytest tests/bench -p no:cacheprovider -q -s --no-header -o python_files="bench_*.py" -o python_functions="bench_*" $(PYTEST_ARGS)

# the demo's workspace goes only when it is one (it holds the marker the demo writes)
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	@if [ -f "$(DEMO)/.disparo-demo" ]; then rm -rf "$(DEMO)"; \
	elif [ -e "$(DEMO)" ]; then echo "kept $(DEMO): not a demo workspace (no .disparo-demo in it)"; fi
