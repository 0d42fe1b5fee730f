"""The rank-k client on a tiny Llama: shared index sets for A and B, untouched coordinates,
memory accounting against allocated tensors."""
import numpy as np
import pytest

from fslora_ref.algorithms import get_algorithm
from fslora_ref.config import FedConfig
from fslora_ref.federation import run_round
from llm_bridge.client import allocated_trainable_floats, train_client
from llm_bridge.data import FAMILIES, dirichlet_partition
from llm_bridge.federated import ModelShapes, TorchClients
from llm_bridge.models import tiny_llama
from llm_bridge.peft_layers import LoraLayers, add_lora
from llm_bridge.task import InstructionTask

RANK = 8


@pytest.fixture(scope="module")
def setup():
    model, tok = tiny_llama(seed=1)
    layers = LoraLayers(add_lora(model, RANK, 16.0, ["q_proj", "k_proj", "v_proj", "o_proj"]))
    task = InstructionTask(tok, dirichlet_partition(2, list(FAMILIES), 16, 1.0, 0), batch_size=4)
    return layers, task, ModelShapes(layers, task.client_sizes)


def make_config(budgets, **kw):
    base = dict(rank=RANK, budgets=budgets, local_steps=3, lr=1e-2, rounds=1, seed=4, lora_scaling=2.0,
                client_optimizer="adamw")
    return FedConfig(**dict(base, **kw))


def changed(before, after, axis):
    """Indices along ``axis`` (1: columns of B, 0: rows of A) where anything changed."""
    diff = np.any(before != after, axis=1 - axis)
    return set(np.flatnonzero(diff).tolist())


def test_scaling_read_from_peft(setup):
    layers, _, _ = setup
    assert layers.scaling == 16.0 / RANK and layers.rank == RANK and len(layers) == 8
    model, _ = tiny_llama(seed=1)
    rs = LoraLayers(add_lora(model, RANK, 16.0, ["q_proj"], use_rslora=True))
    assert rs.scaling == pytest.approx(16.0 / np.sqrt(RANK))


def test_one_index_set_per_layer_shared_by_A_and_B(setup):
    """One client, k < r: in every layer the moved columns of B (rows of lora_A) and the moved
    rows of A (columns of lora_B) are exactly that layer's sketch I; layers draw independently."""
    layers, task, shapes = setup
    config = make_config([2, 2])
    algo = get_algorithm("fslora")
    state = algo.init(shapes, config)
    plan = algo.configure_round(state, shapes, config, 0, [0])[0]
    up = train_client(layers, task, plan, config, 0)
    index_sets = []
    for l, ((B, A), (Bt, At), I) in enumerate(zip(state.layers, up.trained, plan.indices)):
        B_I, A_I = B[:, I], A[I, :]
        assert np.any(Bt != B_I) and np.any(At != A_I)
        # the trained block, scattered back by the server, moves exactly I in B and in A
        new = algo.aggregate(state, [plan], [up], config).layers[l]
        assert changed(B, new[0], axis=1) == set(I.tolist()) == changed(A, new[1], axis=0)
        index_sets.append(tuple(I))
    assert len(set(index_sets)) > 1


def test_coordinates_outside_index_set_untouched(setup):
    """After a bridge round with one participant, B[:, ~I] and A[~I, :] are bit-identical."""
    layers, task, shapes = setup
    config = make_config([3, 3], client_fraction=0.5)
    algo = get_algorithm("fslora")
    state = algo.init(shapes, config)
    new, plans, _ = run_round(TorchClients(algo, layers, task), state, shapes, config, 0)
    assert len(plans) == 1
    for (B, A), (B2, A2), I in zip(state.layers, new.layers, plans[0].indices):
        out = np.setdiff1d(np.arange(RANK), I)
        assert np.array_equal(B[:, out], B2[:, out]) and np.array_equal(A[out, :], A2[out, :])
        assert not np.array_equal(A[I, :], A2[I, :])


def test_masked_form_keeps_unselected_coordinates_under_weight_decay(setup):
    """The full-size masked client (coefficient s diag(S)) must not let AdamW's weight decay
    move coordinates outside I: the restore step is what guarantees it."""
    layers, task, shapes = setup
    config = make_config([2, 2], form="masked", weight_decay=0.1)
    algo = get_algorithm("fslora")
    state = algo.init(shapes, config)
    plan = algo.configure_round(state, shapes, config, 0, [0])[0]
    keep = {}
    train_client(layers, task, plan, config, 0, keep=keep)
    for l, ((B, A), I) in enumerate(zip(state.layers, plan.indices)):
        a = keep["params"][2 * l].detach().double().numpy().T
        b = keep["params"][2 * l + 1].detach().double().numpy().T
        assert a.shape == B.shape
        out = np.setdiff1d(np.arange(RANK), I)
        assert np.array_equal(a[:, out].astype(np.float32), B[:, out].astype(np.float32))
        assert np.array_equal(b[out, :], A[out, :].astype(np.float32))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("form,k", [("submatrix", 1), ("submatrix", 4), ("masked", 1)])
def test_memory_accounting_matches_allocated_tensors(setup, optimizer, form, k):
    layers, task, shapes = setup
    config = make_config([k, k], form=form, client_optimizer=optimizer)
    algo = get_algorithm("fslora")
    plan = algo.configure_round(algo.init(shapes, config), shapes, config, 0, [0])[0]
    keep = {}
    up = train_client(layers, task, plan, config, 0, keep=keep)
    assert allocated_trainable_floats(keep["params"], keep["optimizer"]) == up.memory_floats
    q = RANK if form == "masked" else k
    per_param = 2 + (2 if optimizer == "adamw" else 0)
    assert up.memory_floats == per_param * q * sum(m + n for m, n in layers.layer_shapes)
    assert up.upload_floats == k * sum(m + n for m, n in layers.layer_shapes)


def test_base_weights_row_convention_for_linear_and_conv1d():
    """x W0 (row convention) equals the frozen base layer's output for nn.Linear (Llama) and
    for GPT-2's Conv1D, whose weight PEFT reads transposed (fan_in_fan_out)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    gpt = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    llama, _ = tiny_llama(seed=0)
    for model, targets in ((gpt, ["c_attn"]), (llama, ["k_proj"])):
        layers = LoraLayers(add_lora(model, 4, 8.0, targets))
        W0 = layers.base_weights()[0]
        m, n = layers.layer_shapes[0]
        assert W0.shape == (m, n)
        x = torch.randn(3, m, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = layers.modules[0].base_layer(x).double().numpy()
        bias = layers.modules[0].base_layer.bias
        want = want - (0 if bias is None else bias.detach().double().numpy())
        assert np.allclose(x.double().numpy() @ W0, want, rtol=1e-5, atol=1e-6)


def test_global_factors_map_to_peft_parameter_names(setup):
    """B = lora_A.weight^T and A = lora_B.weight^T, read back by PEFT parameter name."""
    from fslora_ref.lora import LayerFactors
    layers, _, shapes = setup
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((m, RANK)), rng.standard_normal((RANK, n))) for m, n in shapes.layer_shapes]
    layers.install([LayerFactors(B, A, np.full(RANK, 2.0)) for B, A in pairs], trainable=False)
    sd = layers.model.state_dict()
    for name, (B, A), (rb, ra) in zip(layers.names, pairs, layers.read()):
        assert np.allclose(sd[f"{name}.lora_A.default.weight"].numpy().T, B, atol=1e-6)
        assert np.allclose(sd[f"{name}.lora_B.default.weight"].numpy().T, A, atol=1e-6)
        assert np.array_equal(rb, sd[f"{name}.lora_A.default.weight"].double().numpy().T)
        assert rb.shape == B.shape and ra.shape == A.shape
