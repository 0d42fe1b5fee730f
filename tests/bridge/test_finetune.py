"""`fslora finetune` on the tiny Llama: outputs, resume == uninterrupted, PEFT adapter reload."""
import json
import os

import numpy as np
import pytest

from fslora_cli.main import main
from fslora_cli.finetune import finetune

from helpers import finetune_args


def adapter_bytes(out):
    with open(os.path.join(out, "adapter", "adapter_model.safetensors"), "rb") as fh:
        return fh.read()


def test_resume_equals_uninterrupted(tmp_path):
    full = finetune(finetune_args("--out", str(tmp_path / "a"), "--no-verify-adapter"))
    part = finetune(finetune_args("--out", str(tmp_path / "b"), "--no-verify-adapter", "--stop-after", "1"))
    assert len(part["rounds"]) == 1 and "adapter" not in part
    resumed = finetune(finetune_args("--out", str(tmp_path / "b"), "--no-verify-adapter", "--resume"))
    assert adapter_bytes(tmp_path / "a") == adapter_bytes(tmp_path / "b")
    assert [r["train_loss"] for r in resumed["rounds"]] == [r["train_loss"] for r in full["rounds"]]
    assert [e["generated_sha1"] for e in resumed["eval"]] == [e["generated_sha1"] for e in full["eval"]]
    # a checkpoint from another recipe is refused, not silently continued
    with pytest.raises(ValueError, match=r"different run; differing fields: seed \(0 in the checkpoint, 5 now\)"):
        finetune(finetune_args("--out", str(tmp_path / "b"), "--resume", "--seed", "5"))


def test_outputs_accounting_and_adapter_reload(tmp_path):
    out = tmp_path / "run"
    hist = finetune(finetune_args("--out", str(out)))
    on_disk = json.loads((out / "history.json").read_text())
    assert on_disk["eval"][-1]["generated_sha1"] == hist["eval"][-1]["generated_sha1"]
    assert [e["round"] for e in hist["eval"]] == [0, 1, 2, 3]
    with open(out / "curves.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    widths = sum(m + n for m, n in hist["layer_shapes"])
    for row in hist["rounds"]:
        for c in row["clients"]:
            assert c["upload_floats"] == c["k"] * widths
            assert c["memory_floats"] == 4 * c["k"] * widths       # AdamW: params, grads, 2 moments
            assert c["memory_bytes"] == 4 * c["memory_floats"]     # float32
    assert sorted({c["k"] for c in hist["rounds"][0]["clients"]}) == [2, 4]
    # training changed the model's generations, and the saved adapter reproduces the final ones
    assert hist["eval"][-1]["generated_sha1"] != hist["eval"][0]["generated_sha1"]
    assert hist["adapter"]["exact"]
    assert hist["adapter"]["reload_eval"]["generated_sha1"] == hist["eval"][-1]["generated_sha1"]
    assert not [f for f in os.listdir(out) if f.startswith(".") and f != ".fslora-lock"]  # no temp files left behind (the lock is released when `fslora` ends)


@pytest.mark.parametrize("algorithm", ["fedit", "hetlora", "flexlora", "flora"])
def test_baselines_run_through_the_same_path(tmp_path, algorithm):
    hist = finetune(finetune_args("--out", str(tmp_path), "--algorithm", algorithm, "--rounds", "2",
                                  "--no-verify-adapter"))
    ks = sorted({c["k"] for c in hist["rounds"][0]["clients"]})
    assert ks == ([8] if algorithm == "fedit" else [2, 4])
    assert all(np.isfinite(r["train_loss"]) for r in hist["rounds"])
    assert os.path.exists(tmp_path / "adapter" / "adapter_config.json")


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("fslora finetune: error:")
    return err


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    base = ["finetune", "--out", str(tmp_path / "o")]
    assert "does-not-exist" in one_line_error(capsys, base + ["--model", str(tmp_path / "does-not-exist")])
    err = one_line_error(capsys, base + ["--model", "tiny", "--rank", "8", "--clients", "2", "--budgets", "2,32"])
    assert "[1, 8]" in err and "budgets" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "bad.json" in one_line_error(capsys, base + ["--model", "tiny", "--train-json", str(bad), "--eval-json", str(bad)])
    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps([{"instruction": "q", "input": "", "output": "the answer is maybe", "answer": "maybe"}]))
    err = one_line_error(capsys, base + ["--model", "tiny", "--train-json", str(rec), "--eval-json", str(rec)])
    assert "record 0" in err and "maybe" in err
