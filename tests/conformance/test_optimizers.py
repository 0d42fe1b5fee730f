"""Declared optimisers: validated, backward compatible (a plain RoundTask is SGD + average), the
reference conforms under every declaration it can be read in, and an AdamW-client + Adam-server
implementation written from scratch passes when it declares so and, declared as SGD, fails with a
hint that names the optimiser, not the sketch."""
from dataclasses import replace

import numpy as np
import pytest

from fslora_ref.conformance import Optimizers, Options, RoundTask, check_implementation
from fslora_ref.conformance.optimizers import as_optimizers, parse_optimizers
from fslora_ref.conformance.reference import SGDW, impl as reference, task_config
from fslora_ref.optim import AdamW
from tests.conformance.test_examples import load
FAST = Options(rounds=40, budget="quick")
SKETCH_BLAME = ("no sketch applied", "independent sketches", "index set redrawn", "r/k scale", "index set changes")


def test_declarations_are_validated_and_parsed():
    assert as_optimizers(None) == Optimizers() and Optimizers().client == "sgd" and Optimizers().server == "average"
    with pytest.raises(ValueError, match="optimizers.client must be one of"):
        Optimizers(client="adam")
    with pytest.raises(ValueError, match="optimizers.betas must be two numbers in"):
        Optimizers(betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="unknown keys"):
        as_optimizers({"clientt": "sgd"})
    with pytest.raises(TypeError, match="must be a dict"):
        as_optimizers("adamw")
    spec = parse_optimizers("client=adamw, betas=0.8/0.99, weight_decay=0.01, server=adam, server_lr=0.02")
    assert spec == Optimizers(client="adamw", betas=(0.8, 0.99), weight_decay=0.01, server="adam", server_lr=0.02)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_optimizers("client")
    with pytest.raises(ValueError, match="server_lr must be a number"):
        parse_optimizers("server_lr=fast")


def test_a_round_task_with_todays_fields_is_an_sgd_client_and_a_plain_average():
    task = RoundTask(layers=[(np.ones((3, 2)), np.ones((2, 3)))], base_weights=[np.zeros((3, 3))], oracles=[None],
                     budgets=(1,), rank=2, lr=0.1, local_steps=1, weight_decay=0.1)
    assert (task.client_optimizer, task.optimizer_scope, task.server_optimizer) == ("sgd", "selected", "average")
    config = task_config(task)
    assert config.make_client_optimizer() == SGDW(0.1, 0.1) and config.make_server_optimizer().kind == "none"
    adam = task_config(RoundTask(**{**task.__dict__, "client_optimizer": "adamw", "betas": (0.8, 0.9), "eps": 1e-6}))
    assert adam.make_client_optimizer() == AdamW(0.1, 0.8, 0.9, 1e-6, 0.1)
    with pytest.raises(ValueError, match="server_optimizer must be one of"):
        RoundTask(**{**task.__dict__, "server_optimizer": "lamb"})


@pytest.mark.parametrize("declared", [
    {"client": "adamw", "weight_decay": 0.01, "server": "adam", "server_lr": 0.01},
    {"client": "adamw", "betas": (0.8, 0.99), "eps": 1e-6, "lr": 0.02, "server": "sgd", "server_lr": 0.5},
], ids=["adamw+adam", "adamw+sgd-server"])
def test_the_reference_conforms_under_its_declared_optimisers(declared):
    table = check_implementation(reference, options=FAST, optimizers=declared)
    assert table.ok and len(table) == 16, table.format()
    assert "AdamW" in table.optimizers and table.to_json()["optimizers"] == table.optimizers


def test_full_scope_weight_decay_is_read_and_costs_a_full_upload():
    table = check_implementation(reference, mode=["white", "black"], options=FAST,
                                 optimizers={"client": "adamw", "weight_decay": 0.05, "scope": "full"})
    assert table.failed() == ["upload_size"] and table.inconclusive() == [], table.format()
    unreadable = check_implementation(reference, mode="black", options=FAST, optimizers={
        "client": "adamw", "weight_decay": 0.05, "scope": "full", "server": "adam", "server_lr": 0.01})
    assert unreadable.verdict == "inconclusive" and unreadable.exit_code == 3
    assert all("no index set can be read back" in r.diagnosis for r in unreadable)


def test_adamw_client_adam_server_from_scratch_passes_when_it_declares_them():
    table = check_implementation(load("numpy_adamw_adam").impl)
    assert table.ok and len(table) == 16, table.format()
    assert "AdamW: gradients probed near eps" in table["scale_applied_once"].diagnosis


def test_declared_as_sgd_it_fails_with_the_optimiser_named_not_the_sketch():
    example = load("numpy_adamw_adam")
    table = check_implementation(example.impl, optimizers={"client": "sgd", "server": "average"}, options=FAST)
    assert "update_matches_reference" in table.failed(), table.format()
    text = table["update_matches_reference"].diagnosis
    # the declaration it needs is named exactly, or (when a fitted server_lr is a little off) its Adam signature
    assert "the sketch is not at fault" in text and ("'server': 'adam'" in text or "server='adam'" in text)
    assert not any(phrase in text for phrase in SKETCH_BLAME), text
    # the black-box index sets are read correctly despite the wrong declaration
    assert {"index_sets_coincide", "index_set_size", "selection_frequency"}.isdisjoint(table.failed())


class Undeclared:
    """The reference running optimisers it does not declare (betas no default hypothesis tries)."""

    def __init__(self, **fields):
        self.fields = fields

    def black_box_round(self, task):
        return reference.black_box_round(replace(task, **self.fields))


def test_an_undeclared_adam_client_is_named_even_when_no_setting_reproduces_it():
    table = check_implementation(Undeclared(client_optimizer="adamw", betas=(0.5, 0.6)), options=Options(rounds=20))
    assert table.failed() == ["update_matches_reference"], table.format()
    text = table["update_matches_reference"].diagnosis
    # where H = 1 Adam's first step does not depend on the betas, so a declared AdamW reproduces it exactly
    assert "as Adam-type steps (at most about lr each) do" in text or "'client': 'adamw'" in text


def test_sign_like_changes_are_named_as_an_adam_step():
    from fslora_ref.conformance.hints import optimizer_hint
    from fslora_ref.conformance.scenarios import two_layer_round

    task = two_layer_round(np.float64).only_client(1)
    signs = np.random.default_rng(0)
    got = []
    for (B, A), I in zip(task.layers, task.index_sets[0]):
        B, A = B.copy(), A.copy()
        B[:, I] += 0.01 * signs.choice([-1.0, 1.0], size=B[:, I].shape)
        A[I, :] += 0.01 * signs.choice([-1.0, 1.0], size=A[I, :].shape)
        got.append((B, A))
    assert "the signature of a first Adam step" in optimizer_hint(task, got, 1e-9)
