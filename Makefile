# Two commands on a fresh machine: `make run` and `make test`. Everything else installs itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format docs bench fuzz clean

run: $(VENV)/.installed-run
	$(BIN)/tailscribe serve

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The Cython modules (app/*.pyx, app/*/*.pyx) are compiled at install (setup.py): editing one
# reinstalls, which rebuilds it.
CYTHON_SOURCES := $(wildcard app/*.pyx app/*/*.pyx)
$(VENV)/.installed-run: pyproject.toml setup.py $(CYTHON_SOURCES) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py $(CYTHON_SOURCES) | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# The benchmark (bench/RESULTS.md): wrk and hey are Debian packages, as is valgrind (instruction counts
# for bench/instructions.py and bench/compare.py); py-spy and pyinstrument profile.
bench: $(VENV)/.installed-test
	command -v wrk >/dev/null && command -v hey >/dev/null && command -v valgrind >/dev/null || \
		($$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update -qq && \
		$$([ "$$(id -u)" = 0 ] || echo sudo) apt-get install -y -qq wrk hey valgrind)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench.run

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := framing decoders

# Coverage-guided fuzzing of the framer and decoders (fuzz/README.md); bounded, not part of CI.
fuzz: $(VENV)/.installed-run
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install --quiet 'atheris>=2.3' \
		|| echo "atheris cannot be installed here: the harnesses fall back to blind plain-Python mutation"
	for target in $(FUZZ_TARGETS); do \
		$(BIN)/python fuzz/fuzz_$$target.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 -dict=fuzz/json.dict \
			-artifact_prefix=fuzz/artifacts/ fuzz/work/$$target fuzz/corpus/$$target || exit 1; \
	done

clean:
	rm -rf $(VENV) build app/*.c app/*.so app/*/*.c app/*/*.so .pytest_cache .ruff_cache .hypothesis fuzz/work fuzz/artifacts

docs: $(VENV)/.installed-test
	$(BIN)/python -m app.reference
