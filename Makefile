# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install serve serve-postgres test lint chromium eval bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build of torch first, pinned, so nothing pulls a CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

serve: install  ## venv + install + index the sample articles + serve on http://127.0.0.1:8000
	$(BIN)/rag serve

serve-postgres: install  ## the same on a PostgreSQL + pgvector server of its own, under var/postgres
	$(BIN)/rag serve-postgres

chromium:  ## Debian's Chromium, driven by Playwright in the browser tests
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install chromium lint  ## venv + install + chromium + code health + the whole test suite
	$(BIN)/pytest

eval: install  ## answer quality on our question set and SQuAD, with ablations and calibration
	$(BIN)/rag eval

clean:
	rm -rf $(VENV) var build *.egg-info

bench: install  ## ingest, encoder backends, start-up, HTTP latency, 1M-vector scale: table + JSON + PNG in bench/results/
	$(BIN)/python -m bench
