# `make demo` and `make test` each create and fill .venv when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test format bench doctor clean sandbox

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,ray]"
	@$(MAKE) -s sandbox
	touch $(STAMP)

# The python tool and the stdlib doctests run under bubblewrap on Linux (sandbox-exec on macOS).
sandbox:
	@if [ "$$(uname -s)" = Linux ] && ! command -v bwrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "warning: install bubblewrap (sudo apt-get install bubblewrap): without it the python sandbox refuses"; fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/meqg demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/meqg doctor --brief
	$(PY) -m pytest -q -rs

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/store.py

doctor: $(STAMP)
	$(VENV)/bin/meqg doctor

clean:
	rm -rf $(VENV) build *.egg-info
