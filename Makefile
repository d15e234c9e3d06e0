# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpsweep-installed

.PHONY: test demo lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Until `hpsweep run` lands (issue 4) the demo validates every shipped sweep, shows the
# trials the digits sweep would draw, and trains its first trial in-process.
demo: $(STAMP)
	$(BIN)/hpsweep validate sweeps/
	$(BIN)/hpsweep space sweeps/digits_mlp.yaml --samples 5
	$(BIN)/hpsweep train sweeps/digits_mlp.yaml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
