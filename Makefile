# The two front-door commands: `make demo` (main job on an embedded default) and `make test`.
# Both create .venv and install on first use; a second run skips installs unless pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_INDEX ?= demo-index
DEMO_QUESTION ?= What does the GNU General Public License require when you distribute copies?

.PHONY: install demo test test-gpu lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU build of torch first, so nothing pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rag ingest /usr/share/common-licenses --index $(DEMO_INDEX) --domain legal
	$(BIN)/rag ask "$(DEMO_QUESTION)" --index $(DEMO_INDEX)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-gpu:
	python3 -m pytest -q -m gpu

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(DEMO_INDEX) .pytest_cache .ruff_cache
