"""`fslora flower finetune` on the tiny Llama over a real loopback deployment equals
`fslora finetune` in process (float32: <= 1e-6 relative; measured here: bit-identical)."""
import json
import os

import numpy as np
import pytest

from fslora_cli.main import main
from fslora_cli.flower_deploy import marked_processes

pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.timeout(2400)   # hang guard for a loaded machine, not a speed target

TINY = ["--model", "tiny", "--rank", "8", "--lora-alpha", "16", "--clients", "2", "--ratios", "0.25,0.5", "--rounds", "1",
        "--local-steps", "2", "--batch-size", "2", "--lr", "0.02", "--examples-per-client", "12",
        "--eval-per-family", "3", "--eval-every", "1", "--threads", "1", "--no-verify-adapter", "--device", "cpu"]


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def test_tiny_llama_loopback_equals_in_process(tmp_path, capsys, deployments):
    from safetensors.numpy import load_file
    ref, fl = tmp_path / "in_process", tmp_path / "flower"
    assert main(["finetune", *TINY, "--out", str(ref)]) == 0
    code = main(["flower", "finetune", *TINY, "--out", str(fl), "--round-timeout", "600", "--run-timeout", "900"])
    assert code == 0, capsys.readouterr().out
    assert len(deployments) == 1 and marked_processes(deployments[0].token) == []
    a, b = (json.loads((d / "history.json").read_text()) for d in (ref, fl))
    for ra, rb in zip(a["rounds"], b["rounds"], strict=True):
        for ca, cb in zip(ra["clients"], rb["clients"], strict=True):
            assert ca["k"] == cb["k"] and ca["upload_floats"] == cb["upload_floats"]
            assert abs(ca["loss_last"] - cb["loss_last"]) <= 1e-6 * abs(ca["loss_last"])
    assert [e["mean"] for e in a["eval"]] == [e["mean"] for e in b["eval"]]
    wa, wb = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (ref, fl))
    assert wa.keys() == wb.keys() and any(np.linalg.norm(x) > 0 for x in wa.values())
    assert max(rel(wb[k], wa[k]) for k in wa) <= 1e-6
    ledger = json.loads((fl / "flower.json").read_text())["runs"][-1]
    row = ledger["rounds"][0]["clients"]
    assert all(c["setup-seconds"] > 0 and c["process-seconds"] != 0 for c in row.values())
    # float32 on the wire: 4 bytes per accounted float, plus <= 512 B per array (2 per layer) and 2 KB per message
    bound = 1024 * len(a["layers"]) + 2048
    for c in row.values():
        assert 4 * c["up-floats"] < c["up-bytes"] < 4 * c["up-floats"] + bound
        assert 4 * c["down-floats"] < c["down-bytes"] < 4 * c["down-floats"] + bound
