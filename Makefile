# Quick start: `make demo` then `make test`. Needs Python 3.10+ and make; nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Run every example on an embedded SQLite database: one line per example and a summary.
demo: $(STAMP)
	$(PY) tests/run_examples.py

# The whole suite. Server backends run when TEST_POSTGRES_URL / TEST_MYSQL_URL are set.
# Test files run in parallel (pytest-xdist; most tests wait on databases and subprocesses);
# TEST_JOBS=0 runs them in one process.
TEST_JOBS ?= 4
test: $(STAMP)
	$(PY) -m pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

# Benchmarks, reported as ratios (never asserted as timings).
bench: $(STAMP)
	$(PY) -m pytest tests/bench -m bench -p no:randomly -q -s

clean:
	rm -rf $(VENV) build *.egg-info
