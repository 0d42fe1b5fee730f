"""A local --model directory and the reloaded adapter are data: a pickle weight file, a named
pipe, a lying safetensors header or deeply nested JSON is one line (exit 2) before the model
loads, and no code runs."""
import json
import os
import pickle
import struct

import pytest

from llm_bridge.model_files import check_adapter_dir, check_weights_dir
from tests.core.clitools import one_line_error
from tests.core.hostile import Payload

ARGS = ["--rounds", "1", "--clients", "2", "--examples-per-client", "4", "--eval-per-family", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A real transformers model directory (config + safetensors), as save_pretrained writes it."""
    from llm_bridge.models import tiny_llama
    path = tmp_path_factory.mktemp("model") / "tiny"
    model, _ = tiny_llama(hidden=16, layers=1)
    model.save_pretrained(path)
    return path


def _copy(src, dst):
    dst.mkdir()
    for name in os.listdir(src):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_a_saved_model_directory_passes(model_dir):
    check_weights_dir(model_dir)


def test_hostile_model_directories_are_one_line(model_dir, tmp_path, capsys, monkeypatch):
    import llm_bridge.finetune
    monkeypatch.setattr(llm_bridge.finetune, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    marker = tmp_path / "code-ran"
    cases = {}
    d = cases["pickle weights"] = _copy(model_dir, tmp_path / "pickle")
    (d / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Payload(marker)}))
    d = cases["named pipe as tokenizer.json"] = _copy(model_dir, tmp_path / "fifo")
    os.mkfifo(d / "tokenizer.json")
    d = cases["safetensors header longer than the file"] = _copy(model_dir, tmp_path / "st")
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}")
    d = cases["config nested 100,000 deep"] = _copy(model_dir, tmp_path / "deep")
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    d = cases["no safetensors"] = _copy(model_dir, tmp_path / "none")
    (d / "model.safetensors").unlink()
    words = {"pickle weights": "pickle-based weight file", "named pipe as tokenizer.json": "not a regular file",
             "safetensors header longer than the file": "does not fit", "config nested 100,000 deep": "levels deep",
             "no safetensors": "no *.safetensors"}
    for name, path in cases.items():
        err = one_line_error(capsys, ["finetune", "--model", str(path), "--out", str(tmp_path / "out"), *ARGS])
        assert words[name] in err, (name, err)
    assert not marker.exists()


def test_adapter_directory_is_checked(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 2}))
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ValueError, match="pickle-based"):
        check_adapter_dir(adapter)
