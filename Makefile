# Two commands do everything (see README):
#   make all    execute both notebooks in the full profile and build the reports
#   make test   run the test suite (smoke-profile execution + static checks)
PYTHON ?= .venv/bin/python
PROFILE ?= full

.PHONY: all notebooks readme reports test lint build

all: .venv/installed build notebooks readme reports

.venv/installed: requirements.txt tools/install.sh
	bash tools/install.sh
	touch $@

build: .venv/installed
	$(PYTHON) tools/build_notebooks.py

notebooks: build
	for nb in homework*.ipynb; do $(PYTHON) tools/run_notebook.py $$nb --profile $(PROFILE) || exit 1; done

readme: .venv/installed
	$(PYTHON) tools/update_readme.py

reports: .venv/installed
	@if [ -f report/build.py ]; then $(PYTHON) report/build.py; else echo "reports: report/build.py not written yet"; fi

test: .venv/installed
	$(PYTHON) -m pytest -q tests

lint: .venv/installed
	$(PYTHON) -m ruff check tools tests
