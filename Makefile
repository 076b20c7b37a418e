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

.PHONY: setup lab test test-units test-units-a test-units-b test-notebooks test-portable test-notebooks-portable test-notebooks-one-thread bench execute clean

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

# make test: what a learner runs. The unit tests (with the documentation examples of helpers/),
# then every notebook once (numbered, then notebooks/appendix/), with this machine's own
# settings, each cell's output compared with the stored one. The comparison (tests/nbval_numbers.py,
# loaded by conftest.py) lets a printed decimal differ by one unit of its last digit, since
# rounding differs between CPUs, and compares everything else exactly. Checkpoints go to a fresh
# folder under build/, so a run never depends on what a learner left in outputs/. docs/testing.md
# says why; `make test-portable` (CI runs it after this) tries other CPU settings.
# The unit tests first (two halves side by side), then the notebooks alone: run beside the
# unit tests, even at the lowest priority (nice 19), the notebooks' threads wait for each other
# and the pass took 637 s instead of 389 s here. A fresh clone: about 10 minutes on 2 cores (616 s).
test: setup
	status=0; \
	$(MAKE) --no-print-directory -k -j2 --output-sync=target test-units-a test-units-b || status=1; \
	$(MAKE) --no-print-directory test-notebooks || status=1; \
	exit $$status

# The unit tests in two halves, one PyTorch thread each (a multi-threaded job beside another
# waits for its threads at every operation: more than twice as slow here). Half b holds the tests
# that start notebooks, scripts, servers or copied modules in processes of its own, and the
# tokenizer's, so that it takes about as long as the rest (measured alone: 210 s against 115 s
# before test_standalone and test_tokenizer moved over).
PROCESS_TESTS := tests/test_real_model_path.py tests/test_scripts.py tests/test_train_qwen05b_shape.py tests/test_lab.py \
	tests/test_standalone.py tests/test_tokenizer.py
DOCTESTS := --doctest-modules helpers
test-units: test-units-a test-units-b
test-units-a: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(DOCTESTS) tests $(PROCESS_TESTS:%=--ignore=%)
test-units-b: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PROCESS_TESTS)

# $(call notebook_pass,NAME,ENVIRONMENT): every notebook, in order (05-07 and the appendices use
# the checkpoints 04 saves), with checkpoints in a fresh build/NAME-outputs; then one notebook of
# the Chinese edition, run from its own folder (tests/test_zh_edition.py keeps the rest identical
# to the English ones, so running all of them again would test nothing new).
ZH_EXECUTED := zh/notebooks/05_inference.ipynb
notebook_pass = rm -rf build/$(1)-outputs && mkdir -p build/$(1)-outputs && \
	$(2) PVS_OUTPUTS=$(CURDIR)/build/$(1)-outputs $(PY) -m pytest -q $(NBVAL) notebooks $(ZH_EXECUTED)
test-notebooks: setup
	$(call notebook_pass,notebooks,)

# Before a change reaches learners: the notebooks again under other CPU settings, side by side,
# one thread each (the stored outputs come from two threads): ATen's portable kernels
# (ATEN_CPU_CAPABILITY=default: elementwise math, softmax, random numbers; matrix products stay
# with MKL), and this CPU's own kernels. .ci/run calls it after make test.
test-portable: setup
	$(MAKE) --no-print-directory -k -j2 --output-sync=target test-notebooks-portable test-notebooks-one-thread
test-notebooks-portable: setup
	$(call notebook_pass,portable,ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1)
test-notebooks-one-thread: setup
	$(call notebook_pass,one-thread,OMP_NUM_THREADS=1)

# Re-run notebooks top to bottom in a fresh kernel and store their outputs (nbval's baseline).
# make execute                      all notebooks (numbered, then appendix/)
# make execute NB=notebooks/02_pad_eos_pitfalls.ipynb
NB ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb)) $(sort $(wildcard notebooks/appendix/*.ipynb))
execute: setup
	cd notebooks && for nb in $(patsubst notebooks/%,%,$(wildcard $(NB))); do \
	  ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.record_timing=False "$$nb" || exit 1; \
	done
	@echo "Chinese edition: carrying the new outputs over (docs/testing.md)"
	$(PY) scripts/zh_edition.py sync

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) outputs build
