"""The torch/PEFT adapter: weights go in and come back by PEFT parameter name, the example
torch implementations (examples/torch_fslora.py, examples/hf_fslora.py) pass, and torch-side
defects are caught."""
import copy
import dataclasses
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from fslora_ref.conformance import Options, check_implementation  # noqa: E402
from fslora_ref.conformance.scenarios import black_box_round  # noqa: E402
from llm_bridge.peft_conformance import PeftAdapter  # noqa: E402
from tests.conformance.test_examples import load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = Options(rounds=40, budget="quick")   # enough for the deterministic checks; the default budget runs below


example = load("torch_fslora")
hf = load("hf_fslora")


@pytest.mark.parametrize("kind", ["mlp", "tiny_llama"])
def test_weights_round_trip_and_the_client_loss_has_the_oracle_gradient(kind):
    adapter = PeftAdapter(example.train_round, model=kind)
    task = black_box_round(np.float32, shapes=adapter.layer_shapes)
    adapter.write(task)
    for (B, A), (B2, A2) in zip(task.layers, adapter.read()):
        assert np.array_equal(B2, B) and np.array_equal(A2, A)   # float32 values survive exactly
    model = adapter._model
    loss = adapter.client_loss(task.oracles[1])(model)
    loss.backward()
    # dL/dB = G A^T s and dL/dA = s B^T G with G the oracle's gradient at W = W0 + s B A
    s = task.lora_scaling
    W = [W0.astype(float) + s * B.astype(float) @ A.astype(float) for W0, (B, A) in zip(task.base_weights, task.layers)]
    G = task.oracles[1](W)
    params = dict(model.named_parameters())
    for (na, nb), (B, A), g in zip(adapter.param_names(), task.layers, G):
        assert np.allclose(params[na].grad.double().numpy().T, s * g @ A.astype(float).T, rtol=1e-4, atol=1e-5)
        assert np.allclose(params[nb].grad.double().numpy().T, s * B.astype(float).T @ g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["tiny_llama", "mlp"])
def test_example_torch_implementation_passes(kind):
    options = Options() if kind == "tiny_llama" else FAST
    table = check_implementation(PeftAdapter(example.train_round, model=kind, sample_sketch=example.sample_sketch),
                                 options=options)
    assert table.ok, table.format()
    assert [r.mode for r in table] == ["black"] * 5 + ["sampler"] * 3


def test_torch_missing_scale_is_caught():
    def no_scale(*args, **kw):
        return example.train_round(*args, scale_fn=lambda r, k: 1.0, **kw)

    table = check_implementation(PeftAdapter(no_scale), options=FAST)
    assert table.failed() == ["update_matches_reference"]
    assert "x the reference" in table["update_matches_reference"].diagnosis


def test_torch_same_seed_for_every_client_is_caught():
    def shared_seed(model, clients, **kw):
        return example.train_round(model, [dataclasses.replace(c, id=0) for c in clients], **kw)

    table = check_implementation(PeftAdapter(shared_seed), options=FAST)
    assert table.failed() == ["selection_frequency"]
    assert "not independent across clients" in table["selection_frequency"].diagnosis


def test_adapter_rejects_bad_arguments():
    with pytest.raises(TypeError, match="train_round must be callable"):
        PeftAdapter(None)
    with pytest.raises(ValueError, match="model must be one of"):
        PeftAdapter(example.train_round, model="gpt5")
    with pytest.raises(ValueError, match="dtype must be"):
        PeftAdapter(example.train_round, dtype=torch.int32)
    with pytest.raises(ValueError, match="optimizers.server must be one of"):
        PeftAdapter(example.train_round, optimizers={"server": "lamb"})


def test_cli_runs_the_example_by_path_and_by_module(capsys, monkeypatch):
    from fslora_cli.main import main

    monkeypatch.chdir(ROOT)
    assert main(["crosscheck", "examples/torch_fslora.py:impl", "--rounds", "40", "--budget", "quick"]) == 0
    assert main(["crosscheck", "examples.torch_fslora:impl", "--rounds", "40", "--budget", "quick"]) == 0
    assert capsys.readouterr().out.count("8/8 checks passed; conforms") == 2


def test_a_new_rank_or_new_shapes_rebuild_the_model():
    adapter = PeftAdapter(example.train_round)
    for rank, shapes in ((8, adapter.layer_shapes), (5, adapter.layer_shapes), (16, ((24, 24), (24, 12)))):
        task = black_box_round(np.float32, shapes=shapes, rank=rank, budgets=(2, 3, 4, 5))
        adapter.write(task)
        assert adapter._model.peft_config["default"].r == rank and adapter.layer_shapes == [tuple(s) for s in shapes]
        assert all(np.array_equal(B2, B) for (B, _), (B2, _) in zip(task.layers, adapter.read()))
    assert adapter.layer_layout == "llama" and PeftAdapter(example.train_round, model="mlp").layer_layout == "free"


def test_the_default_model_is_a_llama_and_its_batches_give_the_client_loss():
    adapter = PeftAdapter(example.train_round)
    task = black_box_round(np.float32, shapes=adapter.layer_shapes)
    seen = {}

    def inspect(model, clients, **kw):
        seen["config"] = type(model.config).__name__
        local = copy.deepcopy(model)                      # HF users train copies
        for c in clients:
            batches = list(c.dataloader)
            assert len(batches) == len(c.dataloader) == kw["local_steps"]
            hf_loss = local(**batches[0]).loss
            assert torch.allclose(hf_loss, c.loss(local)) and torch.allclose(hf_loss, c.loss(model))

    PeftAdapter(inspect).black_box_round(task)
    assert seen["config"] == "LlamaConfig"
    with pytest.raises(ValueError, match="names no client"):
        adapter.model_for(task.rank, task.lora_scaling)[0](input_ids=torch.tensor([[99]]))


def test_hugging_face_style_example_passes_through_the_adapter():
    table = check_implementation(hf.impl, options=Options(rounds=20, budget="quick"))
    assert table.ok and len(table) == 8, table.format()
    assert "AdamW" in table.optimizers and "Adam on the pseudo-gradient" in table.optimizers


def test_hugging_face_style_example_declared_as_sgd_is_told_its_optimiser():
    table = check_implementation(hf.impl, mode="black", options=Options(rounds=20, budget="quick"), optimizers={})
    assert table.failed() == ["update_matches_reference"], table.format()
    text = table["update_matches_reference"].diagnosis
    assert "'client': 'adamw'" in text and "'server': 'adam'" in text and "the sketch is not at fault" in text
