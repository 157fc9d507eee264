# Two commands set everything up on a fresh machine: `make train` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-lit-effnet
# albumentations 2.0.8 checks for updates on import unless told not to.
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install train test test-slow test-xla chaos lint summary clean mutants mutants-table

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,export]"
	touch $(STAMP)

install: $(STAMP)

train: install
	$(PY) train.py --config quickstart

# Two test processes on the two cores (pytest-xdist), each with one torch thread (tests/conftest.py).
TEST_JOBS ?= 2
test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_JOBS)

test-slow: install
	$(PY) -m pytest -m slow

# The TPU path on torch_xla's CPU device (docs/running-long-jobs.md). torch_xla pins its own torch, so it gets a
# venv of its own (~8 GB), never the project's. Slow (XLA compiles on the CPU): not part of `make test` or CI.
# torch_xla asks a cloud metadata server for the TPU type unless these two variables say it: nothing here may
# reach an address outside this machine.
XLA_VENV ?= .venv-xla
XLA_STAMP := $(XLA_VENV)/.installed-lit-effnet
XLA_ENV := PJRT_DEVICE=CPU TPU_SKIP_MDS_QUERY=1 TPU_ACCELERATOR_TYPE=v4-8
$(XLA_STAMP): pyproject.toml
	test -x $(XLA_VENV)/bin/python || $(PYTHON) -m venv $(XLA_VENV)
	$(XLA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(XLA_VENV)/bin/python -m pip install --quiet "torch==2.9.1" "torchvision==0.24.1" "torch_xla==2.9.0" -e ".[dev]"
	touch $(XLA_STAMP)

test-xla: $(XLA_STAMP)
	$(XLA_ENV) $(XLA_VENV)/bin/python -m pytest -m xla tests/test_xla.py -s

# Kill a short run anywhere and resume it, against an uninterrupted one (tests/chaos.py; 8-20 min on 2 cores).
chaos: install
	$(PY) -m tests.chaos

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Mutation testing (docs/testing.md). Slow (hours for every module on 2 cores): not part of `make test` or CI.
# mutmut 3.8 runs the recipe modules with [tool.mutmut] in mutants/ and every other module of a number's path in a
# project of its own, mutants-runs/<module>/, against its tests ([tool.lit_effnet.mutant-tests]); each resumes.
# One module: make mutants MUTANTS='lit_effnet.callbacks.seeding.*'. The table alone: make mutants-table
MUTANTS ?=
MUTMUT_JOBS ?= 2

mutants: install
	$(PY) scripts/mutants.py --jobs $(MUTMUT_JOBS) $(foreach m,$(MUTANTS),'$(m)')

mutants-table: install
	$(PY) scripts/mutants.py --table $(foreach m,$(MUTANTS),'$(m)')

summary: install
	$(PY) -m lit_effnet.summary

clean:
	rm -rf $(VENV) $(XLA_VENV) *.egg-info
