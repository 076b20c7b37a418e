# Two commands: `make lab` (JupyterLab on the notebooks) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
LAB_ARGS ?=

.PHONY: setup lab test bench execute clean

setup: $(STAMP)

# Re-runs only when the dependency list or the project metadata changed.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

# Unit tests and every notebook (nbval compares each cell's output with the stored one).
test: setup
	$(PY) -m pytest tests notebooks $(NBVAL) -q

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
	rm -rf $(VENV) outputs
