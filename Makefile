# The catalogue's commands. `make help` lists them. Every target creates .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= demo
STRATEGY ?= auto
SET ?=
DATA ?= embedded
# make test: pytest-xdist workers, each running whole files with one TF compute thread (much of a file's
# time is graph tracing, one core's work, so a worker per core beats one process using both).
TEST_WORKERS ?= auto
APPS := image-classification colorize captioning text-generation speech-commands translation traffic-signs \
	game-agent image-generation spoken-translation

.PHONY: help demo test test-slow bench lint clean serve serve-docker browser $(addprefix app-,$(APPS))

help:  ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-24s %s\n", $$1, $$2}'
	@for a in $(APPS); do printf "  %-24s %s\n" "app-$$a" "train, evaluate and export $$a (PRESET=, DATA=, STRATEGY=, SET='k=v ...')"; done

# uv installs the same packages as pip about three times faster (bytecode compiled, as pip does); where uv
# cannot be had or fails, pip installs them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv && $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -e ".[dev,eval]" \
		|| { $(BIN)/pip install --upgrade pip >/dev/null && $(BIN)/pip install -e ".[dev,eval]"; }
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project (pip install -e '.[dev,eval]', by uv where it can)

demo: $(STAMP)  ## train every app on its embedded data, export, reload, predict; writes reports/demo.md
	$(BIN)/catalogue demo --preset $(PRESET)

test: $(STAMP)  ## the fast test suite (smoke presets), one worker per core (TEST_WORKERS=0: in one process)
	$(if $(filter 0,$(TEST_WORKERS)),,TF_NUM_INTRAOP_THREADS=1) $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The browser tests (tests/core/test_serving_ui.py) run in Debian's chromium and skip, saying so, without it.
browser:  ## install Debian's chromium for the browser tests (as root, only when missing; a no-op elsewhere)
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
		|| echo "warning: could not install chromium; the browser tests will skip"; \
	else echo "chromium is missing and cannot be installed here (needs root and apt-get); the browser tests will skip"; fi

test-slow: $(STAMP)  ## slow tests: real-data quality, demo-preset thresholds, multi-process runs
	$(BIN)/pytest -q -m slow

bench: $(STAMP)  ## quality + speed on real data (CATALOGUE_DATA) -> reports/bench.md (APP=name; QUICK=1 -> reports/quick)
	$(BIN)/catalogue bench $(subst -,_,$(APP)) $(if $(QUICK),--quick,)

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check core apps tests

$(addprefix app-,$(APPS)): app-%: $(STAMP)
	$(BIN)/catalogue train $(subst -,_,$*) --preset $(PRESET) --data $(DATA) --strategy $(STRATEGY) \
		$(foreach s,$(SET),--set $(s)) --export saved_models

serve: $(STAMP)  ## serve saved_models/ over TF Serving's REST (:8501) and gRPC (:8500) APIs
	$(BIN)/catalogue serve --model-config saved_models/models.config

serve-docker:  ## the official tensorflow/serving image on saved_models/ with batching (needs docker)
	bash core/serving/docker/serve.sh

clean:  ## remove runs, reports, exports and caches (keeps .venv)
	rm -rf runs reports build *.egg-info .pytest_cache .ruff_cache
	find saved_models -mindepth 1 ! -name README.md -exec rm -rf {} + 2>/dev/null || true
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} + 2>/dev/null || true
