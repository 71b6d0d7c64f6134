# The two commands: `make demo` and `make test`. Both install into .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
HPWF := $(VENV)/bin/hpwf
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

install:  ## create .venv and install the whole stack (Horovod compiled); a no-op when up to date
	@bash scripts/install.sh

demo: install  ## run the quickstart search end to end, then show its status and report
	rm -rf runs/quickstart
	$(HPWF) run workflows/quickstart.py --run-dir runs/quickstart
	$(HPWF) status runs/quickstart
	$(HPWF) report runs/quickstart
	@echo "report: runs/quickstart/report.html"

test: install  ## the whole test suite, real parts included
	$(PY) -m pytest $(PYTEST_ARGS) tests

bench: install  ## benchmarks, printed as side-by-side ratios
	$(PY) -m bench

clean:
	rm -rf runs .pytest_cache
