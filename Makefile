# Two commands do everything (see README):
#   make all    fetch the data, execute both notebooks in the full profile, update the README, build the reports
#   make test   fetch the data if needed, then run the test suite (smoke-profile execution + static checks)
# PROFILE=quick (or smoke) writes everything under build/<profile>/ and leaves the committed files alone.
PYTHON ?= .venv/bin/python
PROFILE ?= full

.PHONY: all data build test lint

all: .venv/installed
	$(PYTHON) tools/run_all.py --profile $(PROFILE)

.venv/installed: requirements.txt constraints.txt tools/install.sh
	bash tools/install.sh
	touch $@

data: .venv/installed
	$(PYTHON) tools/fetch_data.py

build: .venv/installed
	$(PYTHON) tools/build_notebooks.py

test: .venv/installed data
	$(PYTHON) -m pytest -q tests

lint: .venv/installed
	$(PYTHON) -m ruff check tools tests
