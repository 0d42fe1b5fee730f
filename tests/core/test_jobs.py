"""Typed jobs: from_dict / to_dict / validate, and `--config` files under explicit options."""
import json

import pytest

from fslora_cli.main import main
from fslora_ref.jobs import SimulateJob
from llm_bridge.job import FinetuneJob

SMALL = {"clients": 3, "rank": 4, "budgets": [1, 2, 4], "rounds": 2, "m": 8, "n": 6, "algorithms": ["fslora", "fedit"]}


def test_simulate_job_round_trips_and_names_bad_fields():
    job = SimulateJob.from_dict(dict(SMALL, **{"local-steps": 3, "lr": 1}))
    assert job.budgets == "1,2,4" and job.algorithms == "fslora,fedit" and job.local_steps == 3
    assert isinstance(job.lr, float)                              # 1 in a file is the float field's 1.0
    assert SimulateJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    job.validate()
    with pytest.raises(ValueError, match=r"does not know: \['clientz'\]"):
        SimulateJob.from_dict({"clientz": 3})
    with pytest.raises(ValueError, match=r"--budgets\[2\] must be an integer in \[1, 4\], got 9"):
        SimulateJob.from_dict(dict(SMALL, budgets=[1, 2, 9])).validate()
    with pytest.raises(ValueError, match=r"--family must be one of \['least_squares', 'logistic', 'two_layer'\]"):
        SimulateJob(family="cubic").validate()


def test_finetune_job_round_trips_and_refuses_unused_fields():
    job = FinetuneJob.from_dict({"model": "tiny", "ratios": [0.5, 1], "targets": ["q_proj"], "alpha": 16})
    assert job.ratios == (0.5, 1) and job.to_dict()["targets"] == ["q_proj"] and job.alpha == 16.0
    assert FinetuneJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    with pytest.raises(ValueError, match="--dtype must be one of"):
        job.replace(dtype="float16").validate()
    commonsense = job.replace(train_json=("a.json",), eval_json=("b.json",))
    commonsense.refuse_unused({"rank"})
    with pytest.raises(ValueError, match="--families only apply to the synthetic task"):
        commonsense.refuse_unused({"families", "rank"})


def test_config_file_then_explicit_options(tmp_path, capsys):
    """The file fills every option not typed out; an option typed out wins even when it repeats the
    default; the run equals the one given by options alone, byte for byte."""
    cfg = tmp_path / "job.toml"
    cfg.write_text('clients = 3\nrank = 4\nbudgets = [1, 2, 4]\nrounds = 5\nm = 8\nn = 6\nalgorithms = "fslora"\n'
                   'seed = 7\n')
    argv = ["--clients", "3", "--rank", "4", "--budgets", "1,2,4", "--m", "8", "--n", "6", "--algorithms", "fslora"]
    assert main(["simulate", *argv, "--rounds", "2", "--seed", "0", "--out", str(tmp_path / "a")]) == 0
    assert main(["simulate", "--config", str(cfg), "--rounds", "2", "--seed", "0", "--out", str(tmp_path / "b")]) == 0
    a, b = ((tmp_path / d / "history.json").read_bytes() for d in "ab")
    assert a == b                                      # --seed 0 (the default) given: beats the file's 7
    assert json.loads(b)["config"]["rounds"] == 2
    cfg.write_text('clients = 3\nbudgetz = "1"\n')
    capsys.readouterr()
    assert main(["simulate", "--config", str(cfg), "--out", str(tmp_path / "c")]) == 2
    assert "does not know: ['budgetz']" in capsys.readouterr().err


def test_config_file_fields_count_as_given_for_finetune(tmp_path, capsys):
    cfg = tmp_path / "job.json"
    cfg.write_text(json.dumps({"model": "tiny", "families": ["addition"]}))
    err_argv = ["finetune", "--config", str(cfg), "--train-json", "a.json", "--eval-json", "b.json", "--out",
                str(tmp_path / "o")]
    assert main(err_argv) == 2
    assert "--families only apply to the synthetic task" in capsys.readouterr().err


def test_claims_dispatches_on_the_parsed_llm_option(tmp_path, capsys):
    assert main(["claims", "--llm", "--model", "tiny", "--margin", "0.2", "--out", str(tmp_path)]) == 2
    assert "--margin only applies without --llm" in capsys.readouterr().err
    assert main(["claims", "--rank", "8", "--out", str(tmp_path)]) == 2
    assert "--rank only applies with --llm" in capsys.readouterr().err


def test_variants_from_a_config_table_under_explicit_flags(tmp_path, capsys):
    """A [variants.<algorithm>] table in --config picks a baseline's rule; a --<algorithm>-<option> flag
    given on the command line wins over it; an unknown algorithm or value is one line."""
    config = tmp_path / "job.toml"
    config.write_text('clients = 3\nrank = 6\nbudgets = [2, 3, 5]\nm = 8\nn = 5\nrounds = 1\n'
                      'algorithms = "hetlora,flexlora"\n'
                      '[variants.hetlora]\naggregate = "matrix"\n[variants.flexlora]\nsplit = "balanced"\n')
    out = tmp_path / "run"
    assert main(["simulate", "--config", str(config), "--flexlora-split", "on_B", "--out", str(out)]) == 0
    saved = json.loads((out / "history.json").read_text())["algorithm_options"]
    assert saved["hetlora"]["aggregate"] == "matrix" and saved["flexlora"]["split"] == "on_B"
    with pytest.raises(ValueError, match="unknown algorithm"):
        SimulateJob(variants={"hetlorra": {"aggregate": "matrix"}}).validate()
    with pytest.raises(ValueError, match="aggregate"):
        SimulateJob(variants={"hetlora": {"aggregate": "mean"}}).validate()
    assert SimulateJob.from_dict(SimulateJob(variants={"flora": {"scaling": "constant"}}).to_dict()).algorithm_options()[
        "flora"]["scaling"] == "constant"


def test_variants_as_a_flat_string_for_flower_run_configs():
    """A Flower run config holds scalars only: `fslora.variants = "hetlora.aggregate=matrix,..."`."""
    job = SimulateJob.from_dict({"variants": "hetlora.aggregate=matrix, flexlora.split=balanced"})
    assert job.variants == {"hetlora": {"aggregate": "matrix"}, "flexlora": {"split": "balanced"}}
    assert SimulateJob.from_dict({"variants": ""}).variants == {}
    with pytest.raises(ValueError, match="ALGORITHM.OPTION=VALUE"):
        SimulateJob.from_dict({"variants": "hetlora=matrix"})
