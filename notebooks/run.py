"""Execute the notebooks top to bottom (what the tests and ``make notebooks`` do).

    python3 notebooks/run.py                          # all notebooks, full size
    python3 notebooks/run.py --size small 01 03       # selected notebooks, the test-suite size
    python3 notebooks/run.py --out notebooks/_executed --figures docs/figures

Executed copies (with outputs) go to ``--out`` (git-ignored); the key figures each notebook
saves go to ``--figures`` (``docs/figures/``, committed, embedded in the README). The
committed notebooks themselves stay stripped of outputs.

The notebooks read two environment variables, set here for the kernel:
``FSLORA_NOTEBOOK_SIZE`` (``small`` = the test-suite size, ``full`` = the default) and
``FSLORA_FIGURES_DIR`` (where to save key figures as PNG; unset = do not save).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def environment(**values):
    """Temporarily set (value str) or unset (value None) environment variables; the kernel inherits them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def notebooks(selection=()) -> list:
    paths = sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]_*.ipynb")))
    if selection:
        paths = [p for p in paths if any(os.path.basename(p).startswith(s) for s in selection)]
    return paths


def execute(path: str, *, size: str = "full", figures_dir: str | None = None, out_dir: str | None = None,
            timeout: int = 600, extra_env: dict | None = None):
    """Run one notebook in a fresh ``python3`` kernel (cwd = the notebook's folder).

    Returns (executed notebook, seconds). Raises nbclient.exceptions.CellExecutionError (with the
    failing cell and traceback) if any cell raises, e.g. a failed assert.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {"FSLORA_NOTEBOOK_SIZE": size, "FSLORA_FIGURES_DIR": os.path.abspath(figures_dir) if figures_dir else None,
           # many small BLAS calls: threads only add contention on a shared machine
           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           # the notebooks import their shared preamble (nbsetup.py) from this folder, also when a
           # copy of a notebook is executed elsewhere
           "PYTHONPATH": os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)}
    env.update(extra_env or {})
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    start = time.perf_counter()
    try:
        with environment(**env):
            client.execute()
    finally:
        seconds = time.perf_counter() - start
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            nbformat.write(nb, os.path.join(out_dir, os.path.basename(path)))
    return nb, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Execute the fslora notebooks.")
    p.add_argument("which", nargs="*", help="notebook number prefixes (default: all), e.g. 01 04")
    p.add_argument("--size", default="full", choices=["small", "full"])
    p.add_argument("--out", default=os.path.join(HERE, "_executed"), help="folder for executed copies (git-ignored)")
    p.add_argument("--figures", default=None, help="folder for the key figures as PNG (e.g. docs/figures)")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = p.parse_args(argv)
    from nbclient.exceptions import CellExecutionError
    failed = []
    for path in notebooks(args.which):
        name = os.path.basename(path)
        try:
            _, sec = execute(path, size=args.size, figures_dir=args.figures, out_dir=args.out, timeout=args.timeout)
            print(f"{name:<40} ok      {sec:6.1f} s")
        except CellExecutionError as exc:
            failed.append(name)
            print(f"{name:<40} FAILED\n{exc}")
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
