# The two quickstart commands: `make demo` and `make test`. Both create .venv
# and install what they need on first use, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed
DEMO_ARGS ?=
# pytest workers for `make test`, each taking whole test modules (their module fixtures are built once; the
# modules sharing the session's trained workspace go to one worker together, tests/conftest.py);
# TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2

.PHONY: install install-dev demo test lint clean package

# --no-compile: byte-compiling every installed file (pyspark, mlflow, pandas, ...) took about half of a
# fresh install (50 s vs 28 s, benchmarks/RESULTS.md); Python compiles what it imports on first use.
$(RUNTIME_STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-compile -e .
	touch $@

$(DEV_STAMP): setup.py $(RUNTIME_STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --no-compile -e '.[dev]'
	@# The JDBC tests start a real PostgreSQL (tests/support/postgres.py): Debian's server package,
	@# installed when its initdb is missing and we are root (otherwise the tests say what to install).
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; \
	fi
	@# tests/test_report.py opens the segment report in a real headless browser: Debian's chromium.
	if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi
	touch $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

## Generate demo events and run the nightly job on them in local mode.
demo: $(RUNTIME_STAMP)
	$(PY) -m jobs.demo $(DEMO_ARGS)

## Lint, then the whole test suite (slow fault and cluster tests included).
test: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

## segments_lib as a zip for spark-submit --py-files on a cluster, with its config (segments_lib/conf/*.yaml).
## setup.py lays the package out as the wheel does (conf/ becomes segments_lib/conf); DIST=dir builds elsewhere.
DIST ?= dist
package: $(RUNTIME_STAMP)
	rm -rf $(DIST)/.package-build $(DIST)/segments_lib.zip
	mkdir -p $(DIST)
	$(PY) setup.py -q build --build-base $(DIST)/.package-build
	$(PY) -m zipfile -c $(DIST)/segments_lib.zip $(DIST)/.package-build/lib/segments_lib
	rm -rf $(DIST)/.package-build
	@echo "$(DIST)/segments_lib.zip"

clean:
	rm -rf workspace .pytest_cache spark-warehouse metastore_db derby.log
