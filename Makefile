# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hpsweep-installed

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml tests/plugins/textclf/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the test plugin is installed like any user's trainable package, through its entry points
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e tests/plugins/textclf
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# A real sweep on the bundled digits: 12 trials on Ray Tune, recorded in ./mlflow.db.
demo: $(STAMP)
	$(BIN)/hpsweep run sweeps/digits_cnn.yaml

# Every benchmark, each side measured in the same run; writes bench/RESULTS.md (30 to 51 minutes on 2 cores, by the machine).
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
