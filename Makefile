# kprintd developer entry points. `make test` and `make demo` install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install postgres test test-fast demo lint bench clean

install: $(STAMP) postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The embedded test/demo database runs from Debian's PostgreSQL server binaries.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "PostgreSQL server binaries are missing; install them with: sudo apt-get install postgresql"; \
	    exit 1; fi; \
	  echo "Installing Debian's postgresql package (server binaries for the throwaway database)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# Two workers (pytest-xdist), each with its own server, databases and loopback printers: most
# tests wait on a daemon or a printer, so the suite takes about half as long as in one process.
test: install
	$(BIN)/pytest -n 2

# Everything but the tests marked slow (about 2 s or more each: daemons as child processes, the
# demo, the benchmarks' smoke runs, mypy): for the edit-test loop; `make test` is what CI runs.
test-fast: install
	$(BIN)/pytest -n 2 -m "not slow"

lint: install
	$(BIN)/ruff check kprintd tests bench
	$(BIN)/ruff format --check kprintd tests bench
	$(BIN)/mypy

demo: install
	$(BIN)/python -m kprintd.harness.demo

# On a durable cluster (fsync on): daemon latency, isolation, the POS's cost, throughput over
# repeated bursts with memory, pgqueuer's no-op rate for scale; then the audit views on 1M tickets.
bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.views

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
