"""The ServerApp in process (InProcessGrid: real ClientApp, Flower's serialisation, no Flower
processes): a --resume of a different run is refused with the in-process command's message,
also for a run config submitted with `flwr run` (no CLI pre-check), and the ledger says why."""
import json

import pytest
from flwr.app import Context, RecordDict

from fslora_cli.main import main
from fslora_flower import server_app
from fslora_flower.settings import job_parser, run_config

from inprocess import InProcessGrid

SIMULATE = ["--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--algorithms", "fslora"]
TINY = ["--model", "tiny", "--rank", "8", "--alpha", "16", "--clients", "2", "--ratios", "0.25,0.5", "--rounds", "1",
        "--local-steps", "1", "--batch-size", "2", "--examples-per-client", "6", "--eval-per-family", "2",
        "--no-verify-adapter", "--device", "cpu"]


def in_process_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err.split("error: ", 1)[1]


def serve(job, argv, n_clients):
    """Run the ServerApp on the job `fslora <job> argv` as `flwr run` would submit it."""
    args = job_parser(job).parse_args(argv)
    rc = run_config(job, args, args.out, discovery_timeout=30.0, round_timeout=60.0)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc)
    server_app.main(InProcessGrid(rc, n_clients), context)


@pytest.mark.parametrize("job,argv,n_clients,changed", [
    ("simulate", SIMULATE, 3, ["--family", "logistic", "--batch-size", "4"]),
    ("finetune", TINY, 2, ["--lr", "0.5"]),
])
def test_resume_of_another_run_is_refused_as_in_process(tmp_path, capsys, job, argv, n_clients, changed):
    out = str(tmp_path / "out")
    assert main([job, *argv, "--rounds", "1", "--out", out]) == 0
    capsys.readouterr()
    other = [*argv, *changed, "--rounds", "2", "--resume", "--out", out]
    expected = in_process_error(capsys, [job, *other])
    assert "belongs to a different run; differing fields" in expected
    with pytest.raises(ValueError) as err:
        serve(job, other, n_clients)
    assert str(err.value) == expected
    ledger = json.loads((tmp_path / "out" / "flower.json").read_text())["runs"][-1]
    assert ledger["status"] == "failed" and ledger["error"] == expected
