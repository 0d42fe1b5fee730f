"""The scripts of notebooks/ (build.py, run.py, publish.py) loaded as modules: the folder is not a package."""
from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NB_DIR = os.path.join(ROOT, "notebooks")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_notebooks_{name}", os.path.join(NB_DIR, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
