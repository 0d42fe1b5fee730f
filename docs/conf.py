"""Sphinx configuration of the fslora documentation site (`make docs`).

Builds offline: MathJax is vendored in _static/mathjax (docs/tools/vendor_mathjax.sh), the executed
notebooks in notebooks/ are rendered as committed (never re-executed), the results pages render the
committed report records in results/ (docs/tools/record_results.py), and the API reference is
generated from the package tree at build time (api/generated/, not committed).
"""
from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
# the packages from this checkout (not an installed copy), the Flower app's package, the extensions
for path in (os.path.join(DOCS, "_ext"), os.path.join(ROOT, "flower_app"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)
# importing llm_bridge/flwr must never reach a network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

import fslora_ref  # noqa: E402

project = "fslora"
author = "the fslora authors"
copyright = "2026, the fslora authors"
release = version = fslora_ref.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "fslora_api",
    "fslora_results",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "_static", "_templates", "_ext", "tools"]
templates_path = ["_templates"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}

# -- MyST and notebooks --------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 4          # GitHub-style #1-the-problem anchors, as docs/spec.md links them
nb_execution_mode = "off"         # the notebooks are rendered as published by `make notebooks`
nb_ipywidgets_js = {}             # no widget JavaScript from a CDN: the site is offline
nb_merge_streams = True

# literal blocks without a language (plain-prose docstrings, the spec's indented formulas) are text
highlight_language = "none"

# -- math: the vendored MathJax ------------------------------------------------------------------
mathjax_path = "mathjax/tex-chtml-full.js"   # relative to _static

# -- API reference --------------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# -- HTML -----------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"fslora {release}"
html_static_path = ["_static"]
html_css_files = ["fslora.css"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "home_page_in_toc": True,
}
html_last_updated_fmt = None
