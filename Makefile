# `make demo` and `make test` do all the setup themselves: a virtual environment in .venv,
# the package with its extras (torch pinned to the CPU build 2.13.0), then the job.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fslora simulate --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) runs

# Execute every notebook at full size: executed copies (with outputs) go to notebooks/_executed/
# (git-ignored), the key figures to docs/figures/ (committed, shown in the README). The committed
# .ipynb stay stripped; after editing notebooks/src/*.py run `python3 notebooks/build.py`.
.PHONY: notebooks
notebooks: $(STAMP)
	$(PY) notebooks/build.py
	$(PY) notebooks/run.py --out notebooks/_executed --figures docs/figures
