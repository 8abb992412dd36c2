# The only source of set-up: `make demo` and `make test` build .venv from the pinned requirements.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# open_clip must never wait on the Hugging Face hub (a missing pretrained tag would hang ~46 s offline)
export HF_HUB_OFFLINE := 1

.PHONY: demo evidence results test lab app book students clean

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

# Debian's chromium for the browser tests (playwright drives it; never `playwright install`, which downloads one)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "The browser tests need Debian's chromium: run 'sudo apt-get install -y chromium', then make test" >&2; \
		exit 1; \
	fi

# Fashion-MNIST (split-fashion, split-mnist-fashion-animal) ships as Debian's dataset-fashion-mnist package
FASHION := /usr/share/datasets/fashion-mnist
$(FASHION):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST comes from Debian's dataset-fashion-mnist: run 'sudo apt-get install -y dataset-fashion-mnist'" >&2; \
		exit 1; \
	fi

demo: $(VENV)/.installed $(FASHION)
	$(BIN)/holomerge-lab compare --stream split-mnist-fashion-animal --lr 3e-4 --test-per-task 500 --out results/demo/split-mnist-fashion-animal --force
	$(BIN)/holomerge-lab compare --stream rotated-mnist --test-per-task 500 --out results/demo/rotated-mnist --force

# The tables of docs/results.md: every method on both demo streams over 5 seeds (hours on 2 cores; fine-tunes are shared
# through the task cache, so a rerun or an added method costs only what is new)
SEEDS ?= 0 1 2 3 4
evidence: $(VENV)/.installed $(FASHION)
	for stream in split-mnist-fashion-animal rotated-mnist; do \
		$(BIN)/holomerge-lab compare --stream $$stream --methods all --test-per-task 500 --seeds $(SEEDS) \
			--out results/evidence/$$stream --force || exit 1; \
	done
	$(BIN)/holomerge-lab compare --stream split-mnist-fashion-animal --lr 3e-4 --test-per-task 500 --seeds $(SEEDS) \
		--out results/evidence/split-mnist-fashion-animal-lr3e-4 --force

# The shipped results (holomerge_lab/results/, package data): every notebook run live in normal mode, each heavy
# value recorded with the command, package versions and per-cell times (47 min on 2 cores). RESULTS_FLAGS=--fast
# makes the reduced bundle the tests make; RESULTS_OUT=DIR writes it elsewhere.
RESULTS_OUT ?= holomerge_lab/results
RESULTS_FLAGS ?=
results: $(VENV)/.dev $(FASHION)
	$(BIN)/python -m holomerge_lab.tour.shipped --out $(RESULTS_OUT) $(RESULTS_FLAGS)

test: $(VENV)/.dev $(CHROMIUM) $(FASHION)
	$(BIN)/ruff check holomerge_lab tests
	$(BIN)/python -m pytest --durations=20

lab: $(VENV)/.installed
	$(BIN)/jupyter lab notebooks/

# The ablation lab (notebook 06) as a standalone app, on loopback only
app: $(VENV)/.dev
	$(BIN)/voila notebooks/06_ablation_lab.ipynb --Voila.ip=127.0.0.1

# The book: every notebook executed and rendered with its outputs into build/book/ (opens offline: build/book/index.html).
# Normal mode takes the heavy values from the shipped results (98 s on 2 cores from an empty cache); BOOK_FLAGS=--fast is a labelled live preview;
# BOOK_FLAGS="--from DIR" renders notebooks executed before (python benchmarks/notebook_times.py --keep DIR)
BOOK_FLAGS ?=
book: $(VENV)/.dev $(FASHION)
	$(BIN)/python -m holomerge_lab.tour.book --out build/book $(BOOK_FLAGS)

# Student copies: every notebook with its worked solutions removed, into build/students/ (generated, never committed;
# STUDENTS_OUT=DIR writes elsewhere, never into notebooks/ nor over a folder it did not create)
STUDENTS_OUT ?= build/students
students: $(VENV)/.installed
	$(BIN)/python -m holomerge_lab.tour.student --out $(STUDENTS_OUT)

clean:
	rm -rf $(VENV) results .pytest_cache build/book build/students
