# Quick start: `make run` and `make test`. Both create .venv and install Lore first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test lint bench-ack bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m app serve

test: $(STAMP)
	$(BIN)/python tests/ensure_services.py
	$(BIN)/pytest --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench-ack: $(STAMP)
	$(BIN)/python bench/ack_latency.py

# Every benchmark at full size; needs Redis and PostgreSQL (memory_contention).
bench: $(STAMP)
	$(BIN)/python bench/ack_latency.py --rounds 5 --json-out bench/ack_latency.json
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/turn_overhead.py
	$(BIN)/python bench/memory_contention.py
	$(BIN)/python bench/memory_footprint.py
	$(BIN)/python bench/chart.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
