"""`fslora bench --bridge --tiny`: the JSON carries the measured ratios; the memory figures are
counted on allocated tensors and agree with the accounting (no timing is asserted)."""
import json

from fslora_cli.main import main


def test_bench_bridge_tiny_writes_ratios(tmp_path):
    path = tmp_path / "bench.json"
    assert main(["bench", "--bridge", "--tiny", "--rank", "16", "--repeats", "1", "--steps", "1",
                 "--batch-size", "2", "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert res["setting"]["k"] == 2
    # params + grads + both AdamW moments scale with k: exactly k/r of the masked full-rank client
    assert res["memory_ratio"] == 2 / 16
    assert res["trainable_state_bytes"] == res["accounted_state_bytes"]
    assert res["step_time_ratio"] > 0 and all(v > 0 for v in res["peak_rss_bytes"].values())
