# `make demo` and `make test` each create and fill .venv when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test format bench doctor clean sandbox browser kernels screenshots

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

# The browser test of `meqg app --web` drives Debian's chromium through chromium-driver (skipped without).
browser:
	@if [ "$$(uname -s)" = Linux ] && ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "warning: install chromium and chromium-driver (sudo apt-get install ...): without them the browser test skips"; fi; \
	fi

# meqg's CPU kernels: the MLX C++ extension in metal/cpu, built against the installed MLX with
# pinned build tools (nanobind must be the release MLX was built with). A failed build leaves
# its first error in metal/_meqg_kernels.failed and no extension: meqg runs its MLX-ops paths,
# `meqg doctor` says why, and the kernel tests fail. Tried again on every make until it builds.
KERNELS := build/kernels/.built
KERNEL_BUILD_TOOLS := "cmake==3.31.6" "nanobind==3.1.0"
KERNEL_SOURCES := $(wildcard metal/*.h metal/cpu/*.cpp metal/cpu/CMakeLists.txt)

kernels: $(KERNELS)

$(KERNELS): $(STAMP) $(KERNEL_SOURCES)
	@mkdir -p build/kernels
	@rm -f metal/_meqg_kernels.failed
	@if $(PY) -m pip install -q $(KERNEL_BUILD_TOOLS) > build/kernels/log 2>&1 \
	  && $(VENV)/bin/cmake -S metal/cpu -B build/kernels -DPython_EXECUTABLE=$(abspath $(PY)) >> build/kernels/log 2>&1 \
	  && $(VENV)/bin/cmake --build build/kernels -j 2 >> build/kernels/log 2>&1; then \
	  touch $@; echo "meqg kernels: C++ extension built (metal/cpu)"; \
	else \
	  rm -f metal/_meqg_kernels*.so; \
	  (grep -m1 -iE "error" build/kernels/log || tail -n1 build/kernels/log) > metal/_meqg_kernels.failed; \
	  echo "warning: meqg's C++ kernels did not build ($$(cat metal/_meqg_kernels.failed)); full log: build/kernels/log"; \
	fi

demo: $(STAMP) $(KERNELS)
	$(VENV)/bin/meqg demo

test: $(STAMP) $(KERNELS) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/meqg doctor --brief
	$(PY) -m pytest -q -rs --durations=25

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/store.py

# The README's screenshots of `meqg app`, on the store and runs `make demo` builds.
screenshots: $(STAMP)
	$(PY) docs/screenshots.py

doctor: $(STAMP)
	$(VENV)/bin/meqg doctor

clean:
	rm -rf $(VENV) build *.egg-info metal/_meqg_kernels*
