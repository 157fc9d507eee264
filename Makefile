# Two commands set everything up on a fresh machine: `make train` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-lit-effnet
# albumentations 2.0.8 checks for updates on import unless told not to.
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install train test test-slow lint summary clean

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,export]"
	touch $(STAMP)

install: $(STAMP)

train: install
	$(PY) train.py --config quickstart

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

summary: install
	$(PY) -m lit_effnet.summary

clean:
	rm -rf $(VENV) *.egg-info
