# Two entry points (README Quickstart): `make demo` and `make test`.
# Each creates .venv/ if missing, installs torch==2.13.0 first (CPU wheel), then vidgen (editable)
# with a constraint that keeps torch at 2.13.0, then runs its job.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROMPT ?= a red circle moving left
OUT ?= outputs

.PHONY: demo test test-slow setup lint clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -c constraints.txt -e ".[dev,web]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vidgen generate "$(PROMPT)" -o $(OUT)/demo.mp4 -o $(OUT)/demo.gif

browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	    echo "warning: chromium/chromedriver missing and not root: browser tests will fail"; }

test: $(STAMP) browser
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
