"""The run config carries a typed job: the ServerApp and ClientApps rebuild it with
SimulateJob.from_dict / FinetuneJob.from_dict; run configs written before the jobs were typed
still load; a --config file's data paths reach the nodes as absolute paths."""
import os
import pytest
from fslora_cli.flower_deploy import APP_DIR
import json
import tomllib

from fslora_cli.main import main
from fslora_flower.settings import Settings, run_config
from fslora_ref.jobs import SimulateJob
from llm_bridge.job import FinetuneJob

FAULTS = {"out": "/x", "round-timeout": 5.0, "on-missing": "stop", "discovery-timeout": 5.0, "poll-interval": 0.5}
# job-args exactly as the argparse-based run_config wrote them (every option of the command)
OLD_SIMULATE = {"algorithms": "fslora,fedit,hetlora,flexlora,flora", "batch_size": 16, "budget_distribution": None,
                "budgets": None, "client_fraction": 1.0, "client_optimizer": "sgd", "clients": 20,
                "family": "least_squares", "local_steps": 5, "lr": 0.01, "m": 48, "n": 32, "out": "/x", "r_max": None,
                "r_min": None, "rank": 16, "ratios": "0.125,0.25,0.5,0.75", "resume": True, "rounds": 100, "seed": 0,
                "server_lr": None, "server_optimizer": "none"}
OLD_FINETUNE = {"algorithm": "fslora", "alpha": 32.0, "batch_size": 4, "budgets": None, "client_fraction": 1.0,
                "client_optimizer": "adamw", "clients": 4, "device": "auto", "dirichlet_alpha": 0.5, "dtype": "float32",
                "eval_every": 4, "eval_json": None, "eval_per_family": 50, "examples_per_client": 200,
                "families": ["addition", "uppercase", "sort3", "words2digits"], "local_steps": 5, "lr": 0.002,
                "model": "tiny", "out": "/x", "rank": 16, "ratios": [0.125, 0.25, 0.5, 0.75], "resume": False,
                "rounds": 16, "rslora": False, "seed": 0, "server_lr": None, "server_optimizer": "none",
                "stop_after": 3, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"], "threads": 1, "train_json": None,
                "verify_adapter": True, "weight_decay": 0.0}


def test_run_configs_of_the_argparse_era_still_load():
    sim = Settings.from_run_config(dict(FAULTS, job="simulate", **{"job-args": json.dumps(OLD_SIMULATE)}))
    assert sim.args == SimulateJob() and sim.resume is True
    ft = Settings.from_run_config(dict(FAULTS, job="finetune", **{"job-args": json.dumps(OLD_FINETUNE)}))
    assert ft.args == FinetuneJob(model="tiny") and ft.resume is False and ft.stop_after == 3


def test_run_config_round_trips_the_typed_job():
    job = SimulateJob(clients=3, rank=8, budgets="2,4,8", rounds=2, algorithms="fslora")
    rc = run_config("simulate", job, "/out", resume=True, round_timeout=7.0)
    settings = Settings.from_run_config(rc)
    assert settings.args == job and settings.resume and settings.out == "/out" and settings.round_timeout == 7.0
    assert json.loads(rc["job-args"]) == dict(job.to_dict(), out="/out", resume=True)


def test_config_file_paths_reach_the_nodes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.toml").write_text('model = "tiny"\ntrain_json = ["arc=data/ARC/train.json"]\n'
                                       'eval_json = ["boolq/test.json"]\n')
    path = tmp_path / "rc.toml"
    assert main(["flower", "finetune", "--config", "job.toml", "--clients", "2", "--budgets", "2,4",
                 "--export-run-config", str(path)]) == 0
    settings = Settings.from_run_config(tomllib.loads(path.read_text()))
    assert settings.args.train_json == (f"arc={tmp_path}/data/ARC/train.json",)
    assert settings.args.eval_json == (f"{tmp_path}/boolq/test.json",) and settings.args.budgets == (2, 4)


def test_typed_keys_override_the_job_and_are_declared_in_the_app():
    import tomllib
    from flwr.common.config import flatten_dict
    from fslora_flower.settings import Settings, run_config, typed_keys
    from fslora_ref.jobs import SimulateJob
    rc = run_config("simulate", SimulateJob.from_dict({"clients": 4, "rank": 8, "rounds": 5}), "/tmp/x")
    rc.update(typed_keys())                                   # what Flower merges in from pyproject.toml
    assert Settings.from_run_config(rc).args.rounds == 5     # "" / 0: not set, job-args stands
    rc.update({"num-server-rounds": 12, "fslora.rank": 16, "fslora.budgets": "1,2,4,8", "fslora.local-steps": 2})
    job = Settings.from_run_config(rc).args
    assert (job.rounds, job.rank, job.budgets, job.local_steps) == (12, 16, "1,2,4,8", 2)
    rc["fslora.no-such-option"] = 3
    with pytest.raises(ValueError, match="'fslora.no-such-option' is not an option of `fslora simulate`"):
        Settings.from_run_config(rc)
    del rc["fslora.no-such-option"]
    rc["num-server-rounds"] = -1
    with pytest.raises(ValueError, match="'num-server-rounds' must be an integer >= 0"):
        Settings.from_run_config(rc)
    with open(os.path.join(APP_DIR, "pyproject.toml"), "rb") as fh:
        declared = flatten_dict(tomllib.load(fh)["tool"]["flwr"]["app"]["config"])
    assert {k: v for k, v in declared.items() if k in typed_keys()} == typed_keys()   # flwr accepts only declared keys
