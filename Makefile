# The two front-door commands: `make demo` (main job on an embedded default) and `make test`.
# Both create .venv and install on first use; a second run skips installs unless pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_INDEX ?= demo-index
DEMO_QUESTION ?= What must redistributions of source code retain?
# a handful of real licenses: small enough for the CPU embedder to finish in well under a minute
DEMO_CORPUS ?= $(addprefix /usr/share/common-licenses/,GPL-3 Apache-2.0 MPL-2.0 BSD Artistic)
# the reader runs on the CPU here: a few thousand tokens of context keep the demo quick (GPU: 100k default)
DEMO_CONTEXT ?= 4000

.PHONY: install demo test test-gpu lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU build of torch first, so nothing pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rag ingest $(DEMO_CORPUS) --index $(DEMO_INDEX) --domain legal
	$(BIN)/rag -v ask "$(DEMO_QUESTION)" --index $(DEMO_INDEX) --context-tokens $(DEMO_CONTEXT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# on the GPU machine (system python with torch + triton; the gdn2_rag/ GPU test also needs the ingest deps)
test-gpu:
	python3 -m pytest -q -m gpu tests/kernels tests/model

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(DEMO_INDEX) .pytest_cache .ruff_cache
