# The two front-door commands: `make demo` (main job on an embedded default) and `make test`.
# Both create .venv and install on first use from the lock (constraints.txt: the exact versions CI tests);
# a second run skips installs unless pyproject.toml or the lock changed.
# `make test-latest` installs the newest versions pyproject allows into .venv-latest and runs the same
# suite: CI runs both, so an upstream release that breaks us turns CI red before it reaches a user.
PYTHON ?= python3
VENV ?= .venv
LATEST_VENV ?= .venv-latest
LOCK ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the CPU build of torch on these machines; installed first so nothing pulls a multi-GB CUDA build
CPU_TORCH ?= torch==2.13.0
# --no-cache-dir: no second copy of every wheel in ~/.cache (a CI machine once ran out of disk installing)
PIP = -m pip install -q --disable-pip-version-check --no-cache-dir
# the installed versions, as lock lines (the CPU torch wheel's local tag dropped)
FREEZE = -m pip freeze --exclude-editable --disable-pip-version-check | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'
DEMO_INDEX ?= demo-index
DEMO_QUESTION ?= What must redistributions of source code retain?
# a handful of real licenses: small enough for the CPU embedder to finish in well under a minute
DEMO_CORPUS ?= $(addprefix /usr/share/common-licenses/,GPL-3 Apache-2.0 MPL-2.0 BSD Artistic)
# the reader runs on the CPU here: a few thousand tokens of context keep the demo quick (GPU: 100k default)
DEMO_CONTEXT ?= 4000

.PHONY: install demo test test-latest lock test-gpu lint format clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP) "$(CPU_TORCH)"
	$(BIN)/python $(PIP) -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# --reader: the demo shows the GDN-2 reader's answer, and fails loudly if the reader cannot load
demo: $(STAMP)
	$(BIN)/rag ingest $(DEMO_CORPUS) --index $(DEMO_INDEX) --domain legal
	$(BIN)/rag -v ask "$(DEMO_QUESTION)" --index $(DEMO_INDEX) --context-tokens $(DEMO_CONTEXT) --reader

test: $(STAMP)
	$(BIN)/python -m pytest -q

# a fresh venv with the newest allowed versions (no lock); prints what moved against the lock, then removes
# the venv (it is rebuilt every run)
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python $(PIP) "$(CPU_TORCH)"
	$(LATEST_VENV)/bin/python $(PIP) -e ".[dev]"
	$(LATEST_VENV)/bin/python $(FREEZE) | diff $(LOCK) - | sed -n 's/^> /not the locked version: /p' || true
	$(LATEST_VENV)/bin/python -m pytest -q -p no:cacheprovider; rc=$$?; rm -rf $(LATEST_VENV); exit $$rc

# rewrite the lock from a fresh venv with the newest allowed versions (then run `make test`, commit both)
lock:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python $(PIP) "$(CPU_TORCH)"
	$(LATEST_VENV)/bin/python $(PIP) -e ".[dev]"
	{ echo "# The lock: the exact versions \`make install\` and \`make test\` install and CI tests (Python 3.11,"; \
	  echo "# CPU). Rewritten by \`make lock\` from the newest versions pyproject.toml allows."; \
	  $(LATEST_VENV)/bin/python $(FREEZE); } > $(LOCK)

# on the GPU machine (system python with torch + triton; the gdn2_rag/ GPU test also needs the ingest deps)
test-gpu:
	python3 -m pytest -q -m gpu tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(DEMO_INDEX) .pytest_cache .ruff_cache
