"""``fslora flower``: the command lives in the Flower app folder (flower_app/fslora_flower/cli.py),
which `flwr run` ships to the nodes; this module puts that folder on the import path."""
from __future__ import annotations

import os
import sys

APP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flower_app")


def _cli():
    if not os.path.isdir(os.path.join(APP_DIR, "fslora_flower")):
        raise ImportError(f"the Flower app folder {APP_DIR} is missing (fslora flower runs from a clone of fslora)")
    if APP_DIR not in sys.path:
        sys.path.insert(0, APP_DIR)
    import flwr  # noqa: F401  (a clear "missing dependency" if the flower extra is not installed)
    from fslora_flower import cli
    return cli


def configure_parser(p):
    _cli().configure_parser(p)


def run(args) -> int:
    return _cli().run(args)
