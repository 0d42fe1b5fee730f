# `make demo` and `make test` do all the setup themselves: a virtual environment in .venv,
# the package with its extras (torch pinned to the CPU build 2.13.0), then the job.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test setup clean browser docs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all]"
	@touch $(STAMP)

# The documentation site's browser test drives Debian's headless Chromium. Installed where the setup
# can (as root, with apt-get); elsewhere the test reports that it was skipped and why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not installed (needs root and apt-get): the documentation site's browser test will be skipped"; fi

setup: $(STAMP) browser

demo: $(STAMP)
	$(VENV)/bin/fslora simulate --out runs/demo

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) runs build docs/api/generated

# The documentation site (Sphinx, docs/conf.py) into build/docs/html, offline, warnings as errors.
# Its API pages are generated from the package tree; its notebooks are rendered, never re-executed.
docs: $(STAMP)
	$(PY) -m sphinx -b html -W --keep-going -q docs build/docs/html
	@echo "open build/docs/html/index.html"

# Execute every notebook at full size and publish the executed copies (with outputs, stamped with
# their sources' hashes) to docs/notebooks/, committed so a browser shows them; the key figures go
# to docs/figures/. The .ipynb in notebooks/ stay stripped. A new or changed notebooks/src/*.py
# needs only `make notebooks` (the test suite fails until then).
.PHONY: notebooks lab
notebooks: $(STAMP)
	$(PY) notebooks/build.py
	$(PY) notebooks/run.py --out notebooks/_executed --figures docs/figures --publish docs/notebooks

# Open the executed notebooks (docs/notebooks/, with every output) in JupyterLab (installed by the
# setup); their kernels import the shared helpers from notebooks/. As root it needs --allow-root.
lab: $(STAMP)
	PYTHONPATH=$(CURDIR)/notebooks$(if $(PYTHONPATH),:$(PYTHONPATH)) $(VENV)/bin/jupyter lab --notebook-dir=docs/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)
