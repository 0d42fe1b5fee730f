"""A simulation-engine run whose Ray node did not start in time (Ray's fixed 15 s / 30 s waits; a loaded
machine misses them) is run again in a fresh deployment, because nothing was trained; the failed attempt
stays in flower.json as failed, with its cause; any other failure, or a failure after a round ran, is
not retried. The failure is injected by a stand-in for the deployment (no loaded machine needed): its
run does what such a run does, with the output Flower streams for it."""
import json
import os

import pytest

from fslora_cli import flower_deploy, flower_retry
from fslora_cli.flower_deploy import RunResult
from fslora_cli.main import main

pytestmark = pytest.mark.timeout(900)   # hang guard: the real retry starts Ray on a machine maybe loaded

# the tail of what `flwr run --stream` showed when Ray's node did not start (a full suite run at load 11-13)
RAY_DID_NOT_START = """\
  File "/venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1905, in init
    _global_node = ray._private.node.Node(
  File "/venv/lib/python3.11/site-packages/ray/_private/node.py", line 423, in __init__
    raise Exception(
Exception: The current node timed out during startup. This could happen because some of the raylet failed to startup or the GCS has become overloaded.
The above exception was the direct cause of the following exception:
RuntimeError: Simulation Runtime crashed.
RuntimeError: An error was encountered. Ending simulation.
An unhandled exception occurred when running the simulation.
"""
OTHER_FAILURE = "ValueError: run config 'out' must name the output directory on the ServerApp's host\n"
CLI = ["--clients", "4", "--budgets", "1,2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--local-steps", "3",
       "--rounds", "2", "--seed", "5", "--algorithms", "fslora"]


def fake_engine(monkeypatch, fails: int, output: str = RAY_DID_NOT_START, rounds_before_failing: int = 0):
    """Replace SimulationDeployment: the first ``fails`` deployments' runs fail with ``output`` after the
    ServerApp opened its ledger entry (with ``rounds_before_failing`` rounds recorded); later ones are real.
    Returns the list of deployments made."""
    from fslora_flower.rounds import Ledger
    from fslora_flower.settings import Settings
    real, made = flower_deploy.SimulationDeployment, []

    class EngineDidNotStart:
        def __init__(self, n, log_dir, **kw):
            os.makedirs(log_dir, exist_ok=True)
            self.port, self.run_id = 0, str(1000 + len(made))
            with open(os.path.join(log_dir, "superlink.log"), "w") as fh:
                fh.write("attempt %d\n" % len(made))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def run(self, app_dir, rc, *, timeout=None, on_line=None):
            settings = Settings.from_run_config(rc)
            ledger = Ledger(settings.out, resume=settings.resume, run_id=self.run_id)   # what the ServerApp does first
            ledger.set(rounds=[{"round": r + 1} for r in range(rounds_before_failing)])
            for line in output.splitlines(keepends=True):
                on_line(line)
            return RunResult(self.run_id, "finished:failed", "An error was encountered. Ending simulation.", 1.0, {},
                             output)

    def deployment(*a, **kw):
        made.append(EngineDidNotStart(*a, **kw) if len(made) < fails else real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(flower_deploy, "SimulationDeployment", deployment)
    return made


def runs(out):
    return json.load(open(os.path.join(out, "flower.json")))["runs"]


def test_the_cause_is_recognised_only_in_rays_start_up_timeout():
    assert "Ray's node did not register in time" in flower_retry.engine_start_failure(RAY_DID_NOT_START)
    assert flower_retry.engine_start_failure(OTHER_FAILURE) is None
    assert flower_retry.engine_start_failure("") is None


def test_only_an_attempt_that_ran_no_round_counts_as_having_trained_nothing(tmp_path):
    out = str(tmp_path)
    assert flower_retry.attempt_entries(out, 7) == []          # no ledger: the ServerApp wrote none
    assert flower_retry.trained_nothing([])
    assert flower_retry.trained_nothing([{"run-id": "7", "status": "running", "rounds": []}])
    assert not flower_retry.trained_nothing([{"run-id": "7", "status": "running", "rounds": [{"round": 1}]}])
    assert not flower_retry.trained_nothing([{"run-id": "7", "status": "completed", "rounds": []}])
    assert not flower_retry.trained_nothing(None)              # unreadable: nobody can tell
    (tmp_path / "flower.json").write_text("[1, 2")
    assert flower_retry.attempt_entries(out, 7) is None
    assert flower_retry.record_failed_attempt(out, 7, "cause") == []
    assert (tmp_path / "flower.json").read_text() == "[1, 2"   # not a ledger: left as it was


def test_a_failed_attempt_is_recorded_and_kept_in_front_of_the_retry(tmp_path):
    out = str(tmp_path)
    (tmp_path / "flower.json").write_text(json.dumps({"runs": [
        {"run-id": "1", "status": "completed", "rounds": [{"round": 1}]},
        {"run-id": "2", "status": "running", "error": "discovery interrupted", "rounds": []}]}))
    kept = flower_retry.record_failed_attempt(out, 2, "the engine did not start")
    assert kept == runs(out)[1:]
    assert kept[0]["status"] == "failed" and kept[0]["error"] == "the engine did not start"
    assert kept[0]["serverapp-error"] == "discovery interrupted" and kept[0]["exit-code"] == 1
    assert runs(out)[0]["status"] == "completed"                # another run's entry is untouched
    added = flower_retry.record_failed_attempt(out, 3, "again")   # its ServerApp had written nothing
    assert [r["run-id"] for r in runs(out)] == ["1", "2", "3"] and added[0]["status"] == "failed"
    # the retry (a fresh job) starts a fresh ledger: the failed attempts go back in front of it
    (tmp_path / "flower.json").write_text(json.dumps({"runs": [{"run-id": "4", "status": "completed"}]}))
    flower_retry.keep_failed_attempts(out, kept + added, 4)
    assert [(r["run-id"], r["status"]) for r in runs(out)] == [("2", "failed"), ("3", "failed"), ("4", "completed")]
    flower_retry.keep_failed_attempts(out, kept + added, 4)      # a --resume retry kept them: nothing doubled
    assert len(runs(out)) == 3


def test_the_engine_never_starting_fails_after_every_attempt_is_recorded(tmp_path, monkeypatch, capsys):
    made = fake_engine(monkeypatch, fails=flower_retry.ENGINE_START_ATTEMPTS)
    out = str(tmp_path / "o")
    assert main(["flower", "simulate", *CLI, "--engine", "simulation", "--out", out]) == 1
    err = capsys.readouterr().err
    assert len(made) == flower_retry.ENGINE_START_ATTEMPTS
    notices = [line for line in err.splitlines() if "nothing was trained: running the job again" in line]
    assert len(notices) == flower_retry.ENGINE_START_ATTEMPTS - 1 and "Ray's node did not register" in notices[0]
    assert "error: the simulation engine did not start: Ray's node" in err.splitlines()[-1]
    entries = runs(out)
    assert [e["run-id"] for e in entries] == ["1000", "1001", "1002"]
    assert all(e["status"] == "failed" and "Ray's node did not register" in e["error"] and e["exit-code"] == 1
               for e in entries)
    logs = sorted(os.listdir(os.path.join(out, "flower-logs")))
    assert logs == ["superlink-attempt-1.log", "superlink-attempt-2.log", "superlink.log"]


@pytest.mark.parametrize("output, rounds", [(RAY_DID_NOT_START, 1), (OTHER_FAILURE, 0)],
                         ids=["after-a-round", "another-failure"])
def test_a_run_that_trained_or_failed_otherwise_is_not_run_again(tmp_path, monkeypatch, capsys, output, rounds):
    made = fake_engine(monkeypatch, fails=9, output=output, rounds_before_failing=rounds)
    out = str(tmp_path / "o")
    assert main(["flower", "simulate", *CLI, "--engine", "simulation", "--out", out]) == 1
    assert len(made) == 1
    assert "running the job again" not in capsys.readouterr().err
    assert len(runs(out)) == 1


def test_the_run_after_an_engine_that_did_not_start_equals_the_in_process_run(tmp_path, monkeypatch, capsys):
    """The retry runs on Flower's real simulation engine in the same --out (output lock, fresh ledger,
    no checkpoint left by the failed attempt): history.json is byte-identical to the in-process run."""
    pytest.importorskip("ray")
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    assert main(["simulate", *CLI, "--out", ref]) == 0
    made = fake_engine(monkeypatch, fails=1)
    code = main(["flower", "simulate", *CLI, "--engine", "simulation", "--out", fl, "--start-timeout", "300",
                 "--run-timeout", "800"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "(attempt 2 of 3)" in captured.err and len(made) >= 2
    with open(os.path.join(ref, "history.json"), "rb") as a, open(os.path.join(fl, "history.json"), "rb") as b:
        assert a.read() == b.read()
    entries = runs(fl)
    assert entries[0]["run-id"] == "1000" and entries[0]["status"] == "failed"
    assert "Ray's node did not register" in entries[0]["error"]
    assert entries[-1]["status"] == "completed" and len(entries[-1]["rounds"]) == 2
