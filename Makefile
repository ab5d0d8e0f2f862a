# Each target creates .venv when it is missing and installs the project with its dev extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: paper test lint format bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

paper: $(STAMP)
	$(PY) run.py paper

test: lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m ops.bench all --quick

clean-venv:
	rm -rf $(VENV)

# Install or upgrade the systemd service (as root); `systemd/install.sh --dry-run` shows the steps.
.PHONY: install-service
install-service:
	bash systemd/install.sh
