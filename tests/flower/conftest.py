"""Flower tests need flwr (the `flower` extra); the app folder is put on the import path the way
Flower itself loads it."""
import os
import sys

import pytest

pytest.importorskip("flwr")

APP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "flower_app")
if APP_DIR not in sys.path:
    sys.path.insert(0, APP_DIR)


@pytest.fixture(autouse=True)
def _server_identity(monkeypatch):
    """In a ServerApp process Flower sets who is sending; in process the tests do."""
    from flwr.supercore.task_identity import TaskIdentity
    for attr, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attr, value)


@pytest.fixture
def deployments(monkeypatch):
    """Every LocalDeployment started during the test (to check its processes are gone)."""
    from fslora_cli import flower_deploy as deploy
    started, original = [], deploy.LocalDeployment.start

    def start(self):
        started.append(self)
        return original(self)
    monkeypatch.setattr(deploy.LocalDeployment, "start", start)
    return started


@pytest.fixture(autouse=True, scope="session")
def _node_data_cache(tmp_path_factory):
    """Partitions the ClientApps make from a recipe go to a temporary cache, not the user's."""
    os.environ["FSLORA_NODE_DATA_CACHE"] = str(tmp_path_factory.mktemp("node-data"))
