# The only source of set-up: `make demo` and `make test` build .venv from the pinned requirements.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# open_clip must never wait on the Hugging Face hub (a missing pretrained tag would hang ~46 s offline)
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint lab clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate requirements.txt requirements-nodeps.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(VENV)/.installed
	$(BIN)/holomerge-lab compare --stream split-animal --preset quick --out results/demo/split-animal --force
	$(BIN)/holomerge-lab compare --stream rotated-mnist --preset quick --out results/demo/rotated-mnist --force

test: $(VENV)/.dev
	$(BIN)/ruff check holomerge_lab tests
	$(BIN)/python -m pytest

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) results .pytest_cache
