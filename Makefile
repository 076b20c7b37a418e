# Two commands: `make lab` (JupyterLab on the notebooks) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
LAB_ARGS ?=

# PyTorch's CPU allocator then asks Linux for transparent huge pages (madvise MADV_HUGEPAGE) for
# every tensor of 2 MB and more (ignored elsewhere, and where THP is "never"). The tiny model's logits over 151,936 tokens
# are up to 58 MB per batch, allocated afresh several times per training step: with 4 KB pages
# each allocation costs about 14,000 page faults. Notebook 02 measured here: 159 s -> 121 s
# (machine defaults), 311 s -> 228 s (portable pass). Only where memory lies changes, not a number
# (tests/test_training.py).
export THP_MEM_ALLOC_ENABLE ?= 1

.PHONY: setup lab test test-units test-units-a test-units-b test-notebooks test-notebooks-portable test-notebooks-portable-a test-notebooks-portable-b bench execute clean

setup: $(STAMP)

# Re-runs only when the dependency list or the project metadata changed. (pip byte-compiles every
# module it installs, 68 of the 107 s here; --no-compile would leave that to each import, which
# under PYTHONDONTWRITEBYTECODE=1, as set on this machine, repeats it in every process.)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

# Unit tests, and every notebook twice (nbval compares each cell's output with the stored one):
# once with PyTorch's portable kernels on one thread (ATEN_CPU_CAPABILITY=default,
# OMP_NUM_THREADS=1), as another learner's CPU would run them, then with this machine's defaults.
# First four single-threaded jobs side by side: the unit tests in two halves and the portable pass
# in two halves, each portable half on its own copy of notebooks/ (and of the GPU logs 04 reads)
# under build/, so that each has its own ../outputs (05-07 use the checkpoints 04 saves, so 04-07
# stay together). Then the default pass alone: PyTorch's threads wait for each other at every
# operation, so beside other jobs it ran more than twice as slowly here.
test: setup
	$(MAKE) --no-print-directory -k -j4 --output-sync=target \
	  test-units-a test-units-b test-notebooks-portable-a test-notebooks-portable-b
	$(MAKE) --no-print-directory test-notebooks

# The unit tests that run notebooks, scripts or servers in processes of their own (half the time).
PROCESS_TESTS := tests/test_real_model_path.py tests/test_scripts.py tests/test_train_qwen05b_shape.py tests/test_lab.py
test-units: test-units-a test-units-b

test-units-a: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q $(PROCESS_TESTS:%=--ignore=%)

test-units-b: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PROCESS_TESTS)

test-notebooks: setup
	$(PY) -m pytest notebooks $(NBVAL) -q

# Both halves of the portable pass, one after the other.
test-notebooks-portable: test-notebooks-portable-a test-notebooks-portable-b

PORTABLE := build/portable
PORTABLE_RUN = ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(CURDIR)/$(PY) -m pytest -q \
	  --rootdir=$(CURDIR) -c $(CURDIR)/pyproject.toml --nbval --nbval-current-env \
	  --nbval-sanitize-with $(CURDIR)/tests/nbval_sanitize.cfg
test-notebooks-portable-a: setup
	rm -rf $(PORTABLE)-a && mkdir -p $(PORTABLE)-a && cp -r notebooks benchmarks $(PORTABLE)-a/
	cd $(PORTABLE)-a && $(PORTABLE_RUN) notebooks/01_*.ipynb notebooks/02_*.ipynb notebooks/03_*.ipynb

test-notebooks-portable-b: setup
	rm -rf $(PORTABLE)-b && mkdir -p $(PORTABLE)-b && cp -r notebooks benchmarks $(PORTABLE)-b/
	cd $(PORTABLE)-b && $(PORTABLE_RUN) notebooks/04_*.ipynb notebooks/05_*.ipynb notebooks/06_*.ipynb notebooks/07_*.ipynb

# Re-run notebooks top to bottom in a fresh kernel and store their outputs (nbval's baseline).
# make execute                      all notebooks
# make execute NB=notebooks/02_pad_eos_pitfalls.ipynb
NB ?= notebooks/*.ipynb
execute: setup
	cd notebooks && for nb in $(patsubst notebooks/%,%,$(wildcard $(NB))); do \
	  ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.record_timing=False "$$nb" || exit 1; \
	done

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) outputs build
