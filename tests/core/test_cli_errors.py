"""One-line errors (exit 2) for bad paths and options, checked before any computation; early
divergence detection; strict JSON; plots that survive extreme values; temp files and modes."""
from __future__ import annotations

import io
import json
import os
import re
import stat

import pytest

from fslora_cli.main import main
from fslora_ref import DivergenceError, FedConfig, get_algorithm, least_squares, run
from fslora_ref.simulate import plot_histories
from fslora_ref.outputs import TMP_PREFIX
from fslora_ref.progress import Progress

from .clitools import one_line_error

SIM = ["simulate", "--algorithms", "fslora", "--clients", "3", "--rank", "4", "--m", "6", "--n", "4",
       "--batch-size", "4", "--local-steps", "2", "--rounds", "2"]


def never_called(*args, **kwargs):
    raise AssertionError("the computation started before the bad path was reported")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


@pytest.fixture
def no_computation(monkeypatch):
    """Every command's first expensive step fails loudly: errors must come before it."""
    import fslora_ref.bench
    import fslora_ref.simulate
    import fslora_ref.conformance.crosscheck
    import theory.claims
    monkeypatch.setattr(fslora_ref.simulate, "make_problem", never_called)
    monkeypatch.setattr(fslora_ref.bench, "least_squares", never_called)
    monkeypatch.setattr(theory.claims, "run_all", never_called)
    monkeypatch.setattr(fslora_ref.conformance.crosscheck, "load_target", never_called)


def bad_output_paths(a_file, tmp_path):
    """(kind, path) that cannot be written: an existing file, a path under a file, a directory."""
    return [("an existing file", a_file, "is an existing file"),
            ("under a file", a_file / "sub" / "x.json", "is a file, not a directory"),
            ("a directory", tmp_path, "is a directory")]


def test_bad_out_and_json_paths_fail_up_front(tmp_path, a_file, capsys, no_computation):
    for kind, path, words in bad_output_paths(a_file, tmp_path):
        if kind != "a directory":  # --out wants a directory
            assert words in one_line_error(capsys, SIM + ["--out", str(path)]), kind
            assert words in one_line_error(capsys, ["verify", "--quick", "--out", str(path)]), kind
        if kind != "an existing file":  # --json may overwrite a file
            assert words in one_line_error(capsys, ["bench", "--json", str(path)]), kind
            assert words in one_line_error(capsys, ["crosscheck", "fslora_ref.conformance.reference:impl",
                                                    "--json", str(path)]), kind


def test_unwritable_out_fails_up_front(tmp_path, capsys, no_computation, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root may write anywhere: let os.access answer as for a normal user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(locked) else real(p, mode))
    try:
        assert "not writable" in one_line_error(capsys, SIM + ["--out", str(locked / "run")])
        assert "not writable" in one_line_error(capsys, SIM + ["--out", str(locked)])
        assert "not writable" in one_line_error(capsys, ["bench", "--json", str(locked / "b.json")])
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("argv,words", [
    (["--budgets", ""], ["--budgets must list 3 values", "got 0"]),
    (["--budgets", "1,2"], ["--budgets must list 3 values", "got 2"]),
    (["--algorithms", ""], ["--algorithms must name at least one"]),
    (["--algorithms", "fslora,fedit,fslora"], ["--algorithms lists fslora more than once"]),
    (["--algorithms", "fslora,fedprox"], ["--algorithms: unknown ['fedprox']"]),
    (["--r-min", "2"], ["--r-min/--r-max only apply with --budget-distribution"]),
    (["--budget-distribution", "uniform", "--r-max", "9"], ["--r-max must be an integer in [1, 4], got 9"]),
    (["--budget-distribution", "uniform", "--r-min", "3", "--r-max", "2"], ["--r-max must be an integer in [3, 4]"]),
    (["--server-lr", "0.5"], ["--server-lr only applies with --server-optimizer"]),
    (["--ratios", ""], ["--ratios must be comma-separated numbers in (0, 1]"]),
    (["--rank", "0"], ["--rank must be an integer in [1, 65536], got 0"]),
    (["--m", "10000000"], ["--m must be an integer in [1, 1048576]"]),
    (["--lr", "nan"], ["--lr must be a finite number > 0"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_simulate_options(tmp_path, capsys, argv, words, no_computation):
    err = one_line_error(capsys, SIM + ["--out", str(tmp_path / "o"), *argv])
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("argv,words", [
    (["bench", "--k", "100"], ["--k must be an integer in [1, 64], got 100"]),
    (["bench", "--repeats", "0"], ["--repeats must be an integer in [1, 10000], got 0"]),
    (["bench", "--m", "0"], ["--m must be an integer in [1, 1048576]"]),
    (["verify", "--only", ""], ["--only must name at least one claim id"]),
    (["verify", "--only", "nope"], ["--only: unknown claim ids ['nope']"]),
])
def test_bench_and_verify_options_name_the_option(capsys, argv, words, no_computation):
    err = one_line_error(capsys, argv)
    for w in words:
        assert w in err, (w, err)


# -- divergence ----------------------------------------------------------------------------------
def test_divergence_names_round_client_algorithm_and_option(tmp_path, capsys):
    out = tmp_path / "o"
    for lr in ("1e5", "1e100", "1e140"):
        err = one_line_error(capsys, SIM + ["-H", "1", "--lr", lr, "--rounds", "3", "--out", str(out)])
        assert "fslora diverged in round 0" in err and "client" in err and "--lr" in err, err
        assert "--server-lr" not in err
    err = one_line_error(capsys, SIM + ["--server-optimizer", "adam", "--server-lr", "1e4", "--out", str(out)])
    assert "fslora diverged" in err and "no client diverged locally" in err and "--server-lr; now 10000" in err
    assert not (out / "history.json").exists()  # nothing claims rounds that did not converge


def test_divergence_check_is_what_stops_the_run():
    """Mutant: with the factor check off, the same run ends 'successfully' at an absurd loss."""
    problem = least_squares(n_clients=3, m=6, n=4, seed=0, batch_size=4)
    config = FedConfig(rank=4, budgets=[1, 2, 4], local_steps=1, lr=1e3, rounds=3)
    unchecked = run(get_algorithm("fslora"), problem, config, divergence_factor=None)
    assert unchecked["loss"][-1] > 1e4 * unchecked["loss"][0]
    with pytest.raises(DivergenceError, match=r"fslora diverged in round 0: .*limit is 10000x the initial loss"):
        run(get_algorithm("fslora"), problem, config)


def strict_json(path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_history_json_is_strict_and_plots_survive_extreme_values(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(SIM + ["--algorithms", "fslora,flora", "--out", str(out)]) == 0
    data = strict_json(out / "history.json")
    assert len(data["algorithms"]["fslora"]["loss"]) == 3
    extreme = {"a": {"loss": [18.0, 1e140, 1e280], "upload_floats": [0, 1, 2]},
               "b": {"loss": [1.0, float("inf"), float("nan")], "upload_floats": [0, 1, 2]}}
    png = tmp_path / "x.png"
    assert plot_histories(extreme, str(png)) is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_naive_log_plot_crashes_on_these_values(tmp_path):
    """Teeth for the plot test: a plain log axis does crash on the values above."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [18.0, 1e140, 1e280])
    ax.set_yscale("log")
    try:
        with pytest.raises(OverflowError):
            fig.savefig(io.BytesIO(), format="png")
    finally:
        plt.close(fig)


# -- housekeeping --------------------------------------------------------------------------------
def test_orphaned_temp_files_removed_and_modes_follow_the_umask(tmp_path):
    out = tmp_path / "o"
    (out / (TMP_PREFIX + "dir")).mkdir(parents=True)
    (out / (TMP_PREFIX + "file")).write_text("left by a killed run")
    old = os.umask(0o022)
    try:
        assert main(SIM + ["--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert not [p for p in os.listdir(out) if p.startswith(".")]
    for name in ("history.json", "simulate.png", "checkpoint-fslora.npz"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_progress_after_resume(tmp_path, capsys):
    bar_stream = io.StringIO()
    bar = Progress(10, "x", stream=bar_stream, done=6)
    bar.update(1)
    assert " 7/10 " in bar_stream.getvalue()
    out = tmp_path / "o"
    assert main(SIM + ["--rounds", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(SIM + ["--rounds", "4", "--out", str(out), "--resume"]) == 0
    counts = re.findall(r"^simulate \[[# ]*\] (\d+/\d+) ", capsys.readouterr().err, flags=re.M)
    assert counts == ["3/4", "4/4"], counts  # resumed at 2 of 4 rounds: the bar starts there


def test_atomic_directory_modes_replacement_and_cleanup(tmp_path):
    from fslora_ref.outputs import atomic_directory, prepare_output_dir
    target = tmp_path / "adapter"
    old = os.umask(0o027)
    try:
        for content in ("first", "second"):
            with atomic_directory(target) as tmp:
                path = os.path.join(tmp, "weights.bin")
                with open(path, "w") as fh:
                    fh.write(content)
                os.chmod(path, 0o600)  # as safetensors does
    finally:
        os.umask(old)
    assert (target / "weights.bin").read_text() == "second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750 and stat.S_IMODE((target / "weights.bin").stat().st_mode) == 0o640
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            raise RuntimeError("writer failed")
    assert (target / "weights.bin").read_text() == "second"
    assert sorted(os.listdir(tmp_path)) == ["adapter"]  # the failed attempt left nothing behind
    (tmp_path / (TMP_PREFIX + "killed")).mkdir()
    prepare_output_dir(tmp_path, lock=False)
    assert sorted(os.listdir(tmp_path)) == ["adapter"]
