# Two commands do everything (see README):
#   make all    fetch the data, execute both notebooks in the full profile, update the README, build the reports
#   make test   fetch the data if needed, lint, then run the test suite (smoke-profile execution + static checks)
# PROFILE=quick (or smoke) writes everything under build/<profile>/ and leaves the committed files alone.
PYTHON ?= .venv/bin/python
PROFILE ?= full

.PHONY: all data build test lint

all: .venv/installed
	$(PYTHON) tools/run_all.py --profile $(PROFILE)

.venv/installed: requirements.txt constraints.txt tools/install.sh
	bash tools/install.sh
	touch $@

# FashionMNIST (Debian package or download); CIFAR-10 for HW1 appendix B only where the course's copy lies
# beside the project (our machines, which have no download; elsewhere the notebook downloads it itself)
data: .venv/installed
	$(PYTHON) tools/fetch_data.py
	@if [ ! -f data/cifar10.npz ] && [ -f ../shared/tools/cifar10_npz.py ]; then \
		$(PYTHON) ../shared/tools/cifar10_npz.py data/cifar10.npz; fi

build: .venv/installed
	$(PYTHON) tools/build_notebooks.py

# two workers: the notebook executions are small models and figures that one thread runs nearly as fast as two,
# so two of them side by side (one thread each) take about half the time; the tests that share the smoke runs
# stay on one worker (see tests/conftest.py)
test: .venv/installed data lint
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n 2 --dist loadgroup tests

# ruff reads the notebooks themselves, so names are resolved across cells (linting src/ alone cannot do that)
lint: .venv/installed
	$(PYTHON) -m ruff check homework1_supervised.ipynb homework2_unsupervised.ipynb tools tests report/build.py
