# The two commands: `make demo` and `make test`. Both install into .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
HPWF := $(VENV)/bin/hpwf
PYTEST_ARGS ?=

.PHONY: install demo test test-gpu bench clean

install:  ## create .venv and install the whole stack (Horovod compiled); a no-op when up to date
	@bash scripts/install.sh

demo: install  ## run the quickstart search end to end, then show its status and report
	rm -rf runs/quickstart
	$(HPWF) run workflows/quickstart.py --run-dir runs/quickstart
	$(HPWF) status runs/quickstart
	$(HPWF) report runs/quickstart
	@echo "report: runs/quickstart/report.html"

test: install  ## the whole test suite, real parts included (the GPU check is `make test-gpu`)
	$(PY) -m pytest $(PYTEST_ARGS) --ignore=tests/gpu tests

test-gpu: install  ## the GPU check: NT3 on CUDA with Horovod groups; fails on a machine without CUDA
	$(PY) -m pytest $(PYTEST_ARGS) tests/gpu

bench: install  ## benchmarks, printed as side-by-side ratios
	$(PY) -m bench

clean:
	rm -rf runs .pytest_cache
