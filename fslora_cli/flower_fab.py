"""``fslora flower fab``: the Flower App Bundle of flower_app/, built by Flower's own ``flwr build``.

``flwr build`` accepts only app directories named with letters, digits and hyphens, and the
project keeps the folder name ``flower_app/``; so the FAB is built from a copy named ``fslora-app``
holding only what the app ships (its ``.py``, ``.toml`` and ``.md`` files, no caches). The FAB
holds the app alone; the code it runs (fslora_ref, llm_bridge) is installed on each host.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from .flower_deploy import APP_DIR, ENV, DeploymentError, _tool

SHIPPED = (".py", ".toml", ".md")
APP_NAME = "fslora-app"


def build_fab(out_dir: str) -> str:
    """Build the FAB of APP_DIR into ``out_dir`` (created if missing); returns the FAB's path.

    Raises DeploymentError with flwr build's own message if it refuses the app."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fslora-fab-") as tmp:
        app = os.path.join(tmp, APP_NAME)
        shutil.copytree(APP_DIR, app, ignore=lambda d, names: [
            n for n in names if not os.path.isdir(os.path.join(d, n)) and not n.endswith(SHIPPED)
            or n == "__pycache__"])
        env = dict(os.environ, FLWR_HOME=os.path.join(tmp, "flwr-home"), **ENV)
        done = subprocess.run([_tool("flwr"), "build", "--app", app], cwd=tmp, capture_output=True, text=True,
                              env=env, timeout=300)
        fabs = [n for n in os.listdir(tmp) if n.endswith(".fab")]
        if done.returncode != 0 or len(fabs) != 1:
            raise DeploymentError(f"flwr build failed: {' '.join((done.stdout + done.stderr).split())[-300:]}")
        target = os.path.join(out_dir, fabs[0])
        shutil.move(os.path.join(tmp, fabs[0]), target)
    return target
