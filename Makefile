# Developer entry points. GNU make; recipes are POSIX sh (dash on Debian).
# See docs/development.md. Everything runs through tox from a private .venv.
#
#   make test        whole matrix in parallel (+ lint, types, migrations,
#                    postgres if reachable, browser if chromium is installed)
#   make test-fast   one env for the current python3 (ARGS="-k foo" for pytest)
#   make mutation    mutation testing of the critical modules (slow; not in test)
#   make lint | types | format | migrations | clean

SHELL := /bin/sh
.SHELLFLAGS := -ec
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
TOX := $(VENV)/bin/tox
JOBS ?= 2
# Extra pytest arguments for test-fast, e.g. make test-fast ARGS="-k token -x"
ARGS ?=
PY_VERSIONS := 3.10 3.11 3.12 3.13
TEST_ENVS := py310-django52,py311-django52,py312-django60,py312-django61,py313-django60,py313-django61
CHECK_ENVS := lint,types,migrations,package
JUNIT_DIR := .tox/junit

# Shell fragment: find python3.10 … 3.13 and put their real bin dirs first on
# PATH, so tox (virtualenv discovery) sees them even when pyenv shims are
# broken or there is no `pyenv` command at all. Sets $$missing_pys.
define FIND_PYTHONS
pyroot=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv")
found_dirs=""; missing_pys=""
for v in $(PY_VERSIONS); do
  want="import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$$v'.split('.'))))"
  exe=""
  for cand in "$$(command -v python$$v 2>/dev/null || true)" "$$pyroot"/versions/$$v.*/bin/python$$v; do
    [ -n "$$cand" ] && [ -x "$$cand" ] || continue
    if "$$cand" -c "$$want" >/dev/null 2>&1; then
      exe=$$("$$cand" -c 'import sys; print(sys.executable)'); break
    fi
  done
  if [ -n "$$exe" ]; then
    found_dirs="$$found_dirs$${found_dirs:+:}$$(dirname "$$exe")"
    echo "make: python$$v -> $$exe"
  else
    missing_pys="$$missing_pys $$v"
    echo "make: python$$v NOT FOUND"
  fi
done
[ -z "$$found_dirs" ] || PATH="$$found_dirs:$$PATH"
export PATH
endef

# Shell fragment: is this a CI run? (CI=true/1/yes)
define IS_CI
case "$${CI:-}" in [Tt][Rr][Uu][Ee]|1|[Yy][Ee][Ss]) true ;; *) false ;; esac
endef

.PHONY: help
help:
	@echo "make test       full tox matrix in parallel (-p $(JOBS)) with summary"
	echo "make test-fast  one env for the current $(PYTHON) (ARGS='pytest args')"
	echo "make mutation   mutation testing, cosmic-ray; slow (MODULES='routing crypto')"
	echo "make lint       ruff check + ruff format --check + lint-imports (layers)"
	echo "make types      mypy --strict"
	echo "make format     ruff format + ruff check --fix"
	echo "make migrations makemigrations --check"
	echo "make package    build sdist + wheel, twine check --strict"
	echo "make demo       run the example project on http://127.0.0.1:8000/"
	echo "make bench      our backend vs Django's SMTP backend, side by side"
	echo "make clean      remove .venv, .tox and caches"

# ---------------------------------------------------------------- bootstrap
$(VENV)/bin/python:
	@if ! $(PYTHON) -m venv $(VENV); then
	  echo "make: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2
	  rm -rf $(VENV); exit 1
	fi

# Re-install tox only when requirements/tox.txt changes.
$(VENV)/.tox-stamp: requirements/tox.txt | $(VENV)/bin/python
	@$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements/tox.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.tox-stamp

# ---------------------------------------------------------------- tests
.PHONY: test
test: $(VENV)/.tox-stamp
	@$(FIND_PYTHONS)
	envs="$(TEST_ENVS),$(CHECK_ENVS)"; notes=""; skip_missing=""
	pytest_envs="$(TEST_ENVS)"
	if $(IS_CI); then skip_missing="--skip-missing-interpreters false"; fi
	# postgres: when something listens on 127.0.0.1:5432, or when required.
	if $(VENV)/bin/python -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 2).close()' 2>/dev/null; then
	  envs="$$envs,postgres"; pytest_envs="$$pytest_envs,postgres"
	elif $(IS_CI) || [ "$${LIVE_OAUTH_MAIL_REQUIRE_POSTGRES:-}" = 1 ]; then
	  envs="$$envs,postgres"; pytest_envs="$$pytest_envs,postgres"
	  notes="$$notes\n  postgres: REQUIRED but nothing listens on 127.0.0.1:5432 (will fail)"
	else
	  notes="$$notes\n  postgres: not run (nothing listens on 127.0.0.1:5432)"
	fi
	# browser: when Debian's chromium is installed, or always under CI.
	if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || $(IS_CI); then
	  envs="$$envs,browser"; pytest_envs="$$pytest_envs,browser"
	else
	  notes="$$notes\n  browser: not run (no chromium; apt-get install chromium)"
	fi
	[ -z "$$missing_pys" ] || notes="$$notes\n  interpreters missing:$$missing_pys ($${skip_missing:+envs FAIL under CI}$${skip_missing:-their envs are SKIPPED})"
	rm -rf $(JUNIT_DIR); mkdir -p $(JUNIT_DIR)
	echo "$$pytest_envs" | tr , '\n' > $(JUNIT_DIR)/expected-envs
	echo "make: tox run-parallel -p $(JOBS) -e $$envs $$skip_missing"
	rc=0
	$(TOX) run-parallel -p $(JOBS) --parallel-no-spinner $$skip_missing -e "$$envs" || rc=$$?
	echo
	echo "==================== make test summary ===================="
	echo "environments: $$envs" | sed 's/,/, /g'
	[ -z "$$notes" ] || printf '%b\n' "notes:$$notes"
	$(VENV)/bin/python scripts/test_summary.py $(JUNIT_DIR) || true
	if [ $$rc -eq 0 ]; then echo "RESULT: PASSED (see tox summary above)"; \
	else echo "RESULT: FAILED (tox exit code $$rc; failed env output is printed above)"; fi
	exit $$rc

# One env for the interpreter behind $(PYTHON): quick iteration.
.PHONY: test-fast
test-fast: $(VENV)/.tox-stamp
	@pyver='import sys; print("%d%d" % sys.version_info[:2])'
	# ask before FIND_PYTHONS reorders PATH (python3 must stay *your* python3);
	# retry afterwards for e.g. PYTHON=python3.13 behind a broken pyenv shim.
	ver=$$($(PYTHON) -c "$$pyver" 2>/dev/null || true)
	$(FIND_PYTHONS)
	[ -n "$$ver" ] || ver=$$($(PYTHON) -c "$$pyver" 2>/dev/null || true)
	case $$ver in
	  310|311) env=py$$ver-django52 ;;
	  312|313) env=py$$ver-django61 ;;
	  *) echo "make: $(PYTHON) is $${ver:-not runnable}; supported: 3.10-3.13 (try make test-fast PYTHON=python3.12)" >&2; exit 1 ;;
	esac
	exec $(TOX) run -e $$env -- $(ARGS)

# Mutation testing (docs/development.md): about two hours for every module on
# two idle cores, so it is not part of `make test`. MODULES="routing crypto"
# picks modules (default: all), MUTATION_JOBS runs that many at a time, and a
# second run resumes where an interrupted one stopped (ARGS=--fresh restarts).
MODULES ?=
MUTATION_JOBS ?= 1
.PHONY: mutation
mutation: $(VENV)/.tox-stamp
	@$(FIND_PYTHONS)
	exec nice -n 10 $(TOX) run -e mutation -- --jobs $(MUTATION_JOBS) $(ARGS) $(MODULES)

.PHONY: lint types migrations package format
lint types migrations package format: $(VENV)/.tox-stamp
	@$(FIND_PYTHONS)
	exec $(TOX) run -e $@

# ---------------------------------------------------------------- example / bench
# Uses the same .venv as tox; installs the package editable with extras.
.PHONY: demo
# Installs once (again only when pyproject.toml changes), then migrates, makes
# the demo user, starts the local stand-ins and serves http://127.0.0.1:8000/.
demo: $(VENV)/.demo-stamp
	exec $(VENV)/bin/python example_project/manage.py demo

$(VENV)/.demo-stamp: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e '.[testing,example]'
	touch $@

# Our backend vs Django's SMTP backend, side by side (docs/benchmarks.md): a
# batch on loopback, one send_mail() per call and the queue over 30 ms of round
# trip, then queue workers; a few minutes. ARGS go to benchmarks.bench
# (ARGS=--quick smoke-runs it, ARGS="--rtt-ms 60"). Installs once (again only
# when pyproject.toml changes).
.PHONY: bench
bench: $(VENV)/.bench-stamp
	exec $(VENV)/bin/python -m benchmarks.bench $(ARGS)

$(VENV)/.bench-stamp: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet -e '.[testing,example]'
	touch $@

# ---------------------------------------------------------------- clean
.PHONY: clean
clean:
	rm -rf $(VENV) .tox .mutation build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
	find . -name '*.egg-info' -prune -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
