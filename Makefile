# Two commands: `make lab` (JupyterLab on the notebooks) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
LAB_ARGS ?=

# PyTorch's CPU allocator then asks Linux for transparent huge pages (madvise MADV_HUGEPAGE) for
# every tensor of 2 MB and more (ignored elsewhere, and where THP is "never"). The tiny model's
# logits over 151,936 tokens are up to 58 MB per batch, allocated afresh several times per
# training step: each time on fresh pages, with 4 KB pages about 14,000 page faults. Notebook 02
# measured here, before the glibc settings below: 159 s -> 121 s (machine defaults), 311 s -> 228 s
# (portable pass). Only where memory lies changes, not a number (tests/test_training.py).
export THP_MEM_ALLOC_ENABLE ?= 1

# Why those pages are fresh each time: glibc's malloc gives a large block (32 MiB and more always,
# smaller ones until its threshold has risen past them) a mapping of its own and unmaps it when it
# is freed, so the next one must be faulted in and zeroed again. MALLOC_MMAP_MAX_=0 serves such
# blocks from malloc's heap instead (on the main thread, where PyTorch allocates them);
# MALLOC_TRIM_THRESHOLD_ keeps the freed space there for reuse until more than 1 GiB is free at
# the heap's top. A process then keeps its high-water mark of memory. Other C libraries ignore
# both. Exported to every command, JupyterLab's kernels from `make lab` included. Measured here,
# one notebook at the machine's defaults (nbconvert): 02 69 s -> 40 s, peak memory 1.18 -> 1.20 GB;
# 04 34 s either way, 1.33 -> 1.57 GB. No number changes (tests/test_training.py).
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824

.PHONY: setup lab test test-units test-units-a test-units-b test-notebooks test-portable test-notebooks-portable bench execute clean

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

# make test: what a learner runs. The unit tests (with the documentation examples of helpers/)
# and every notebook once (numbered, notebooks/appendix/, one of the Chinese edition), each cell's
# output compared with the stored one. The comparison (tests/nbval_numbers.py, loaded by
# conftest.py) lets a printed decimal differ by one unit of its last digit, since rounding differs
# between CPUs, and compares everything else exactly. docs/testing.md says why.
# Six jobs, JOBS at a time, one PyTorch thread each, on this CPU's own kernels: the series'
# operations are small, so a second thread speeds one notebook up little, and two one-thread
# jobs side by side finish the same notebooks in about two thirds of the time. Checkpoints go to
# a fresh build/native-outputs, so a run never depends on what a learner left in outputs/.
# `make test-notebooks` runs the notebooks as JupyterLab does (this machine's thread count);
# `make test-portable` (CI runs it after this) tries other CPU settings.
JOBS ?= 2
# make's -j with no number means no limit: an empty or odd JOBS would start every job at once
ifeq ($(shell echo '$(JOBS)' | grep -Ex '[1-9][0-9]*'),)
$(error JOBS must be a whole number of jobs, 1 or more (got '$(JOBS)'))
endif
BUILD ?= build
test: setup
	$(call fresh_outputs,native)
	+$(call notebook_jobs,native,OMP_NUM_THREADS=1,pooled-units-a pooled-units-b)
	@$(call failed_jobs,native)

# The unit tests in two halves, one thread each. Half b holds most of the tests that start
# notebooks, scripts or servers in processes of their own, and the tokenizer's; it is the shorter
# (about 110 s against 145 s here, beside the notebooks), since it starts after the longer lane
# of notebooks.
PROCESS_TESTS := tests/test_real_model_path.py tests/test_scripts.py tests/test_train_qwen05b_shape.py tests/test_lab.py \
	tests/test_tokenizer.py
units_a = OMP_NUM_THREADS=1 $(PY) -m pytest -q --doctest-modules helpers tests $(PROCESS_TESTS:%=--ignore=%)
units_b = OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PROCESS_TESTS)
test-units: test-units-a test-units-b
test-units-a: setup
	$(units_a)
test-units-b: setup
	$(units_b)

# The notebooks in four groups, each in name order. 05, 06, 07 and the appendices of 05 and 06
# load the checkpoints 04 saves (load_or_train), so they run after it, one group at a time: if
# 04 failed before saving, only the first of them trains the checkpoints again. 01-03 with their
# appendices start beside 04; the appendices of 04 and 07 need no checkpoint but run with 07 to
# even out the two lanes below. A notebook added later falls into that last group. The Chinese
# edition: one notebook, run from its own folder (tests/test_zh_edition.py keeps the rest
# identical to the English ones, so running all of them again would test nothing new).
ZH_EXECUTED := zh/notebooks/05_inference.ipynb
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb)) $(sort $(wildcard notebooks/appendix/*.ipynb))
in_chapters = $(filter $(foreach n,$(1),notebooks/$(n)_% notebooks/appendix/$(n)_%),$(NOTEBOOKS))
NB_01_03 := $(call in_chapters,01 02 03)
NB_04 := $(filter notebooks/04_%,$(NOTEBOOKS))
NB_05_06 := $(call in_chapters,05 06) $(ZH_EXECUTED)
NB_07 := $(filter-out $(NB_01_03) $(NB_04) $(NB_05_06),$(NOTEBOOKS))

# $(call notebook_jobs,PASS,ENVIRONMENT,MORE TARGETS): the four groups with ENVIRONMENT, sharing
# the checkpoints in build/PASS-outputs (made fresh by $(call fresh_outputs,PASS) just before), and
# MORE TARGETS beside them, JOBS at a time. A job that fails writes its name to build/PASS-failed
# and lets make go on, so that what waits for it still runs; $(call failed_jobs,PASS) then fails
# the pass. `make -n` runs the line that starts make (marked with +, to show what that make would
# run), so it neither deletes nor checks anything.
notebook_jobs = $(MAKE) --no-print-directory -k -j$(JOBS) --output-sync=target PASS=$(1) PASS_ENV="$(2)" \
	  nb-group-04 nb-group-01-03 nb-group-05-06 nb-group-07 $(3)
failed_jobs = if test -s $(BUILD)/$(1)-failed; then echo "failed (the reports are above):" $$(cat $(BUILD)/$(1)-failed); exit 1; fi
fresh_outputs = rm -rf $(BUILD)/$(1)-outputs $(BUILD)/$(1)-failed && mkdir -p $(BUILD)/$(1)-outputs
nb_group = $(if $(strip $(1)),,$(error $@: no notebooks found; run make in the project's folder)) \
	$(PASS_ENV) PVS_OUTPUTS="$(abspath $(BUILD))/$(PASS)-outputs" $(PY) -m pytest -q $(NBVAL) $(1) \
	|| echo $@ >> $(BUILD)/$(PASS)-failed
.PHONY: nb-group-04 nb-group-01-03 nb-group-05-06 nb-group-07 pooled-units-a pooled-units-b
nb-group-04:
	$(call nb_group,$(NB_04))
nb-group-01-03:
	$(call nb_group,$(NB_01_03))
nb-group-05-06: nb-group-04
	$(call nb_group,$(NB_05_06))
nb-group-07: nb-group-05-06
	$(call nb_group,$(NB_07))
pooled-units-a:
	$(units_a) || echo $@ >> $(BUILD)/$(PASS)-failed
pooled-units-b:
	$(units_b) || echo $@ >> $(BUILD)/$(PASS)-failed
# With 2 jobs or fewer, the unit tests start last, each after a group: make would otherwise start
# them as soon as a job slot frees, ahead of the groups that wait for 04, and the pass would end
# later. That makes two lanes: 04, 05-06, 07, half b (about 330 s here); 01-03, half a (about
# 310 s). With more jobs they start at once.
ifneq ($(filter 1 2,$(JOBS)),)
pooled-units-a: | nb-group-05-06
pooled-units-b: | nb-group-07
endif

# The notebooks in place, as JupyterLab runs them: this machine's own settings, one process.
test-notebooks: setup
	rm -rf $(BUILD)/defaults-outputs && mkdir -p $(BUILD)/defaults-outputs && \
	PVS_OUTPUTS="$(abspath $(BUILD))/defaults-outputs" $(PY) -m pytest -q $(NBVAL) notebooks $(ZH_EXECUTED)

# Before a change reaches learners: the notebooks again under other CPU settings. ATen's portable
# kernels (ATEN_CPU_CAPABILITY=default: elementwise math, softmax, random numbers; matrix products
# stay with MKL), one thread per job as in make test; then this machine's own thread count
# (the stored outputs come from two threads). .ci/run calls it after make test.
test-portable: setup
	status=0; \
	$(MAKE) --no-print-directory test-notebooks-portable || status=1; \
	$(MAKE) --no-print-directory test-notebooks || status=1; \
	exit $$status
test-notebooks-portable: setup
	$(call fresh_outputs,portable)
	+$(call notebook_jobs,portable,ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1,)
	@$(call failed_jobs,portable)

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
