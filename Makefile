# napari-neuroreview: `make demo` opens napari with a sample case; `make test` runs the tests.
# Each target makes .venv itself. A torch already in .venv is kept (no CUDA download);
# otherwise torch==2.13.0 is installed first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.neuroreview-installed
XVFB := xvfb-run -a -s "-screen 0 1920x1080x24"
# Test processes (pytest-xdist); whole files go to one worker, so a module's fixtures are built once.
# `make test JOBS=0` runs it in one process. `make test` leaves out the tests marked slow (model-quality
# training checks and benchmark runs, minutes each; each has a fast test of its code path in the suite):
# `make test-slow` runs those.
JOBS ?= 2

.PHONY: demo test test-slow venv sample-data benchmarks clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[testing]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/neuroreview view --sample cmb

test: $(STAMP)
	@command -v xvfb-run >/dev/null || { echo "make test needs Xvfb: sudo apt-get install xvfb xauth libgl1-mesa-dri"; exit 1; }
	$(XVFB) $(PY) -m pytest -n $(JOBS) --dist loadfile -m "not slow"

test-slow: $(STAMP)
	@command -v xvfb-run >/dev/null || { echo "make test-slow needs Xvfb: sudo apt-get install xvfb xauth libgl1-mesa-dri"; exit 1; }
	$(XVFB) $(PY) -m pytest -n $(JOBS) --dist loadfile -m slow

sample-data: $(STAMP)
	$(VENV)/bin/neuroreview sample-data --out sample_data

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
