"""Execute the notebooks top to bottom (what the tests and ``make notebooks`` do).

    python3 notebooks/run.py                          # all notebooks, full size, published to docs/notebooks/
    python3 notebooks/run.py 03                       # one notebook (republishes docs/notebooks/03_*.ipynb)
    python3 notebooks/run.py --size small 01 03       # the test-suite size (never published)

A full-size run that succeeds is published (``publish.py``): the executed notebook, with its
outputs, goes to ``docs/notebooks/`` (committed, rendered by a browser), stamped with the hashes
of the sources it was built from; a test compares the stamps with the current sources. Scratch
copies, including failed runs, go to ``--out`` (git-ignored); the key figures each notebook saves
go to ``--figures`` (``docs/figures/``, committed, embedded in the README). The notebooks in
``notebooks/`` themselves stay stripped of outputs.

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


FIRST_CELL_GUARD = 180   # seconds (see execute)


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
    from nbclient.exceptions import CellTimeoutError

    first_code = next((c for c in nb.cells if c.cell_type == "code"), None)

    def cell_timeout(cell):
        # the first cell only imports: a kernel that has not answered it in FIRST_CELL_GUARD seconds is
        # stuck (seen once under load: a fresh kernel idle in epoll, the client waiting for its reply)
        return min(timeout, FIRST_CELL_GUARD) if cell is first_code else timeout

    start = time.perf_counter()
    try:
        for attempt in (1, 2):
            client = NotebookClient(nb, timeout=timeout, timeout_func=cell_timeout, kernel_name="python3",
                                    resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
            try:
                with environment(**env):
                    client.execute()
                break
            except CellTimeoutError:
                # retry once, with a fresh kernel, only when not even the first cell ran; a notebook
                # whose own cells are slow or hang still fails
                if attempt == 2 or first_code is None or first_code.get("execution_count"):
                    raise
                print(f"{os.path.basename(path)}: the kernel did not run the first cell; one more try with a "
                      f"fresh kernel", file=sys.stderr)
                nb = nbformat.read(path, as_version=4)
                first_code = next((c for c in nb.cells if c.cell_type == "code"), None)
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
    p.add_argument("--out", default=os.path.join(HERE, "_executed"), help="folder for scratch executed copies (git-ignored)")
    p.add_argument("--figures", default=None, help="folder for the key figures as PNG (e.g. docs/figures)")
    p.add_argument("--publish", default=None,
                   help="folder for the executed full-size notebooks (default: docs/notebooks; small runs are never published)")
    p.add_argument("--no-publish", action="store_true", help="do not publish the executed notebooks")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = p.parse_args(argv)
    if args.size == "small" and args.publish:
        p.error("--publish needs --size full: only full-size runs are published")
    sys.path.insert(0, HERE)
    import build
    import publish
    from nbclient.exceptions import CellExecutionError
    paths = notebooks(args.which)
    if not paths:
        p.error(f"no notebook matches {args.which}")
    publish_dir = None if args.no_publish or args.size == "small" else (args.publish or publish.DEST)
    sources = {path: os.path.join(HERE, "src", os.path.splitext(os.path.basename(path))[0] + ".py") for path in paths}
    if publish_dir and build.main(["--check"]) != 0:
        print("the notebooks are out of date with notebooks/src/: run python3 notebooks/build.py first")
        return 1
    failed = []
    for path in paths:
        name = os.path.basename(path)
        try:
            nb, sec = execute(path, size=args.size, figures_dir=args.figures, out_dir=args.out, timeout=args.timeout)
            where = ""
            if publish_dir and os.path.exists(sources[path]):
                where = "  -> " + os.path.relpath(publish.publish(nb, sources[path], publish_dir))
            print(f"{name:<40} ok      {sec:6.1f} s{where}")
        except CellExecutionError as exc:
            failed.append(name)
            print(f"{name:<40} FAILED\n{exc}")
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
