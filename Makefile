# ecm_dask: two commands on a fresh machine
#   make demo   - set up .venv (Python >= 3.12) and run the demo on the built-in synthetic series
#   make test   - set up .venv and run the test suite
# Other targets: make venv, make bench, make clean

SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
DEMO_OUT ?= demo_out

# Find a Python >= 3.12: $PYTHON if given, then pythonX.Y on PATH, then pyenv/asdf/uv/conda installs.
find_python = $(shell \
  for c in "$$PYTHON" python3.14 python3.13 python3.12 python3 python \
      $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 /root/.pyenv/versions/3.1[2-9]*/bin/python3 \
      /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9] /opt/conda/bin/python3 \
      $$HOME/.local/share/uv/python/cpython-3.1[2-9]*/bin/python3; do \
    [ -n "$$c" ] || continue; \
    p=$$(command -v "$$c" 2>/dev/null) || continue; \
    "$$p" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null && { echo "$$p"; break; }; \
  done)

.PHONY: demo test venv bench clean

$(VENV)/.installed: pyproject.toml
	@PYBIN="$(find_python)"; \
	if [ -z "$$PYBIN" ]; then \
	  echo "error: ecm_dask needs Python >= 3.12 (zarr >= 3.2 requires it) and none was found."; \
	  echo "       Install one (e.g. 'pyenv install 3.12', 'apt-get install python3.12', 'uv python install 3.12')"; \
	  echo "       or point to it: make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)"; \
	  exit 1; \
	fi; \
	echo "using $$PYBIN ($$($$PYBIN --version))"; \
	if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then rm -rf $(VENV); fi; \
	[ -x $(PY) ] || "$$PYBIN" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ecm-dask demo -o $(DEMO_OUT) --overwrite

test: $(VENV)/.installed
	$(PY) -m ruff check ecm_dask tests benchmarks notebooks
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_synth.py
	$(PY) benchmarks/bench_g2.py kernel
	$(PY) benchmarks/bench_g2.py pipeline
	$(PY) benchmarks/bench_pooling.py
	$(PY) benchmarks/bench_fit.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
