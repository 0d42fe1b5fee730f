"""The ServerApp in process (InProcessGrid: real ClientApp, Flower's serialisation, no Flower
processes): a --resume of a different run is refused with the in-process command's message,
also for a run config submitted with `flwr run` (no CLI pre-check), and the ledger says why;
`fslora flower <job>` (its deployment replaced by InProcessDeployment) exits with the code
`fslora <job>` gives for the same error, and says "nothing to resume" once."""
import json

import pytest
from flwr.app import Context, RecordDict

from fslora_cli.main import main
from fslora_cli import flower_deploy as deploy
from fslora_flower import server_app
from fslora_flower.rounds import Ledger
from fslora_cli.flower import job_parser, run_config

from inprocess import InProcessDeployment, InProcessGrid

SIMULATE = ["--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--algorithms", "fslora"]
TINY = ["--model", "tiny", "--rank", "8", "--lora-alpha", "16", "--clients", "2", "--ratios", "0.25,0.5", "--rounds", "1",
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


def test_flower_exit_code_is_the_in_process_one(tmp_path, capsys, monkeypatch):
    """finetune --resume of another run: refused by the ServerApp (the run identity needs the model),
    exit 2 as `fslora finetune`; a node that never answers (not a user error): exit 1."""
    monkeypatch.setattr(deploy, "LocalDeployment", InProcessDeployment)
    out = str(tmp_path / "out")
    assert main(["finetune", *TINY, "--out", out]) == 0
    capsys.readouterr()
    other = [*TINY, "--lr", "0.5", "--rounds", "2", "--resume", "--out", out]
    expected = in_process_error(capsys, ["finetune", *other])
    assert main(["flower", "finetune", *other]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("fslora flower finetune: error: " + expected)
    ledger = json.loads((tmp_path / "out" / "flower.json").read_text())["runs"][-1]
    assert ledger["run-id"] == str(InProcessDeployment.RUN_ID) and ledger["exit-code"] == 2

    monkeypatch.setattr(InProcessGrid, "get_node_ids", lambda self: [])      # no SuperNode ever answers
    assert main(["flower", "simulate", *SIMULATE, "--rounds", "1", "--discovery-timeout", "0.2",
                 "--out", str(tmp_path / "o2")]) == 1
    assert "no SuperNode answered" in capsys.readouterr().err
    assert json.loads((tmp_path / "o2" / "flower.json").read_text())["runs"][-1]["exit-code"] == 1


def test_ledger_exit_code_is_the_failed_runs_own(tmp_path):
    assert Ledger.exit_code(str(tmp_path), "7") == 1                             # no flower.json
    (tmp_path / "flower.json").write_text("{not json")
    assert Ledger.exit_code(str(tmp_path), "7") == 1
    ledger = Ledger(str(tmp_path), run_id=6)
    ledger.set(status="failed", **{"exit-code": 2})
    assert Ledger.exit_code(str(tmp_path), "6") == 2
    assert Ledger.exit_code(str(tmp_path), "7") == 1                             # another run's entry does not count


@pytest.mark.parametrize("damage,why", [("{not json", "is not valid JSON"), ("[1, 2]", "is not a ledger"),
                                        ('{"runs": 5}', "is not a ledger"), ('{"runs": [1]}', "is not a ledger"),
                                        (None, "cannot be read")],
                         ids=["not-json", "a-list", "runs-not-a-list", "an-entry-not-an-object", "a-directory"])
def test_a_damaged_ledger_is_one_line_on_resume_and_a_fallback_after_a_failure(tmp_path, damage, why):
    """One reader (Ledger.read): no file is an empty ledger; a damaged one is a one-line error for a
    resumed run, and the readers that run after a failure fall back (0 entries, nothing marked, exit 1)
    and leave it as it is. A fresh run starts a new ledger whatever was there."""
    out, path = str(tmp_path), tmp_path / "flower.json"
    assert Ledger.read(out) == {"runs": []} and Ledger.count(out) == 0
    assert Ledger(out, resume=True, run_id=3).doc["runs"][0]["run-id"] == "3"     # no file: a fresh ledger
    if damage is None:
        path.mkdir()
    else:
        path.write_text(damage)
    with pytest.raises(ValueError) as err:
        Ledger(out, resume=True, run_id=4)
    message = str(err.value)
    assert message.startswith(f"{path} {why}") and message.endswith("; move it away to resume")
    assert "\n" not in message
    assert Ledger.count(out) == 0
    assert Ledger.mark_crashed(out, "the SuperLink died") is False
    assert Ledger.exit_code(out, "4") == 1
    assert (damage is None and path.is_dir()) or path.read_text() == damage      # left as it was
    if damage is not None:
        Ledger(out, run_id=5).save()                                                # a fresh run: a new ledger
        assert Ledger.count(out) == 1


def test_mark_crashed_marks_only_this_deployments_unfinished_runs(tmp_path):
    out = str(tmp_path)
    (tmp_path / "flower.json").write_text(json.dumps({"runs": [
        {"run-id": "1", "status": "running"}, {"run-id": "2", "status": "completed"},
        {"run-id": "3", "status": "running", "error": "lost the SuperLink"}]}))
    assert Ledger.count(out) == 3
    assert Ledger.mark_crashed(out, "the SuperLink died", first=1) is True
    runs = Ledger.read(out)["runs"]
    assert runs[0] == {"run-id": "1", "status": "running"} and runs[1]["status"] == "completed"
    assert runs[2] == {"run-id": "3", "status": "failed", "error": "the SuperLink died",
                       "serverapp-error": "lost the SuperLink", "exit-code": 1}


@pytest.mark.parametrize("job,argv", [("simulate", [*SIMULATE, "--rounds", "1"]), ("finetune", TINY)])
def test_nothing_to_resume_is_said_once(tmp_path, capsys, monkeypatch, job, argv):
    """The CLI's pre-check stays silent; the ServerApp, which runs the job, says it."""
    monkeypatch.setattr(deploy, "LocalDeployment", InProcessDeployment)
    assert main(["flower", job, *argv, "--resume", "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("--resume: no checkpoint") == 1
