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

.PHONY: setup lab test test-units test-units-a test-units-b test-notebooks test-notebooks-portable test-notebooks-portable-a test-notebooks-portable-b test-notebooks-native test-notebooks-native-a test-notebooks-native-b bench execute clean

setup: $(STAMP)

# Re-runs only when the dependency list or the project metadata changed. pip installs without
# byte-compiling (compiling every module it installs took 68 of 107 s here); the import line then
# compiles, once, the modules every test process starts with; any other module is compiled by the
# first process that imports it.
# Bytecode writing is switched on for make's commands: where PYTHONDONTWRITEBYTECODE=1 is set
# (this machine sets it), every process would otherwise compile torch and transformers again.
unexport PYTHONDONTWRITEBYTECODE
WARM_IMPORTS := import helpers, helpers.lora, helpers.packing, matplotlib.pyplot, peft, nbval.plugin, ipykernel.ipkernel, pytest
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements.txt -e .
	$(PY) -c "$(WARM_IMPORTS)"
	touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

# Unit tests, and every notebook twice (nbval compares each cell's output with the stored one),
# each time with one PyTorch thread: once with the kernels PyTorch picks for this CPU (AVX2 here;
# an ATEN_CPU_CAPABILITY you set is kept), once with ATen's portable ones
# (ATEN_CPU_CAPABILITY=default: elementwise math, softmax, random numbers; matrix products stay
# with MKL, which picks its own code by CPU). The stored outputs come from `make execute` with the
# machine's defaults (2 threads here), so both passes also change the thread count; `make
# test-notebooks` re-runs them in place with your machine's defaults. Six jobs: the unit tests in
# two halves and each notebook pass in two halves, each notebook half on its own copy of
# notebooks/ (and of the GPU logs 04 reads) under build/, so that each has its own ../outputs
# (05-07 use the checkpoints 04 saves, so 04-07 stay together). JOBS of them at a time, longest
# first (scripts/parallel_jobs.py: one per CPU, one per 2 GB of memory; here 2: 600 s, against
# 665 s for all six at once). One thread per job: a multi-threaded pass beside other jobs ran
# more than twice as slowly here, as PyTorch's threads wait for each other at every operation.
JOBS ?= $(shell $(PYTHON) scripts/parallel_jobs.py --max 6)
test: setup
	$(MAKE) --no-print-directory -k -j$(or $(strip $(JOBS)),1) --output-sync=target \
	  test-notebooks-portable-b test-notebooks-portable-a test-notebooks-native-b test-notebooks-native-a \
	  test-units-b test-units-a

# The unit tests that run notebooks, scripts or servers in processes of their own (half the time).
PROCESS_TESTS := tests/test_real_model_path.py tests/test_scripts.py tests/test_train_qwen05b_shape.py tests/test_lab.py
test-units: test-units-a test-units-b

test-units-a: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q $(PROCESS_TESTS:%=--ignore=%)

test-units-b: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PROCESS_TESTS)

test-notebooks: setup
	$(PY) -m pytest notebooks $(NBVAL) -q

# A pass's halves, one after the other.
test-notebooks-portable: test-notebooks-portable-a test-notebooks-portable-b
test-notebooks-native: test-notebooks-native-a test-notebooks-native-b

# $(call notebook_half,PASS-HALF,ENVIRONMENT,NOTEBOOKS): copy notebooks/ to build/PASS-HALF, run nbval there
notebook_half = rm -rf build/$(1) && mkdir -p build/$(1) && cp -r notebooks benchmarks build/$(1)/ && \
	cd build/$(1) && $(2) OMP_NUM_THREADS=1 $(CURDIR)/$(PY) -m pytest -q \
	  --rootdir=$(CURDIR) -c $(CURDIR)/pyproject.toml --nbval --nbval-current-env \
	  --nbval-sanitize-with $(CURDIR)/tests/nbval_sanitize.cfg $(3)
# The series' numbered notebooks, in order: 01-03, then 04 onwards (a notebook added later included).
SERIES := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
FIRST_HALF := $(filter notebooks/01_% notebooks/02_% notebooks/03_%,$(SERIES))
SECOND_HALF := $(filter-out $(FIRST_HALF),$(SERIES))
PORTABLE_KERNELS := ATEN_CPU_CAPABILITY=default

test-notebooks-portable-a: setup
	$(call notebook_half,portable-a,$(PORTABLE_KERNELS),$(FIRST_HALF))
test-notebooks-portable-b: setup
	$(call notebook_half,portable-b,$(PORTABLE_KERNELS),$(SECOND_HALF))
test-notebooks-native-a: setup
	$(call notebook_half,native-a,,$(FIRST_HALF))
test-notebooks-native-b: setup
	$(call notebook_half,native-b,,$(SECOND_HALF))

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
