"""Notebook speed benchmark: how long each notebook takes at the test-suite size.

    python benchmarks/notebooks.py            # every notebook
    python benchmarks/notebooks.py 04 06      # those whose names start with 04 or 06

The target is under TARGET_SECONDS per notebook on an idle 2-core machine. This used to be an
assertion in tests/notebooks/test_notebooks.py, where a loaded machine (same code) failed it;
speed is measured here, with the load average printed next to it, and the tests check behaviour.
Exit code 1 if a notebook misses the target (or fails), 0 otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

TARGET_SECONDS = 90.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _runner():
    spec = importlib.util.spec_from_file_location("_notebooks_run", os.path.join(ROOT, "notebooks", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(prefixes) -> int:
    runner = _runner()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"notebooks at the test size; target < {TARGET_SECONDS:.0f} s each; load average {load:.1f}, "
          f"{os.cpu_count()} cores")
    missed = 0
    for path in runner.notebooks(prefixes or None):
        name = os.path.splitext(os.path.basename(path))[0]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                _, seconds = runner.execute(path, size="small", figures_dir=os.path.join(tmp, "figures"),
                                            timeout=3600)
            except Exception as exc:  # a failing notebook is the tests' business; report it and go on
                print(f"{name:<32} FAILED ({type(exc).__name__})")
                missed += 1
                continue
        ok = seconds < TARGET_SECONDS
        missed += not ok
        print(f"{name:<32} {seconds:7.1f} s  {'ok' if ok else 'OVER TARGET'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
