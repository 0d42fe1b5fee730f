"""The checkpoint schema follows each baseline's variant (issue 20): HetLoRA's aggregate=delta takes
a server step (``server_opt``) and aggregate=matrix does not; FedIT and FLoRA with
weighting=data_size keep the client sizes. An honest checkpoint of every variant resumes; one
missing a part its variant keeps, or holding a part it does not, is refused naming the part."""
from __future__ import annotations

import pytest

from fslora_ref.algorithms import get_algorithm
from fslora_ref.checkpoint_format import read_archive, write_archive
from fslora_ref.config import FedConfig
from fslora_ref.federation import run
from fslora_ref.problems import least_squares

# (algorithm, options, a part the variant keeps, a part it must not hold)
VARIANTS = [
    ("fslora", {}, "server_opt", "client_sizes"),
    ("fedit", {}, "server_opt", "client_sizes"),
    ("fedit", {"weighting": "data_size"}, "client_sizes", "merged"),
    ("hetlora", {}, "server_opt", "delta_W"),                      # aggregate=delta, the paper's rule
    ("hetlora", {"aggregate": "matrix"}, None, "server_opt"),
    ("flora", {}, "merged", "client_sizes"),
    ("flora", {"weighting": "data_size"}, "client_sizes", "server_opt"),
    ("flexlora", {}, "delta_W", "server_opt"),
    ("flexlora", {"weighting": "data_size", "split": "on_B"}, "client_sizes", "merged"),
]


def _setup(tmp_path, name, options):
    problem = least_squares(n_clients=3, seed=3, batch_size=8)
    config = FedConfig(rank=6, budgets=(2, 3, 5), local_steps=2, lr=0.01, rounds=2)
    ckpt = str(tmp_path / f"checkpoint-{name}.npz")
    run(get_algorithm(name, **options), problem, config, checkpoint=ckpt, stop_after=1)
    return problem, config, ckpt


@pytest.mark.parametrize("name,options,kept,foreign", VARIANTS, ids=lambda v: str(v))
def test_each_variant_resumes_and_its_schema_refuses_lies(tmp_path, name, options, kept, foreign):
    problem, config, ckpt = _setup(tmp_path, name, options)
    honest = open(ckpt, "rb").read()
    assert run(get_algorithm(name, **options), problem, config, checkpoint=ckpt, resume=True).n_rounds == 2

    header, tree = read_archive(_restore(ckpt, honest))
    tree["state"]["extra"][foreign] = [1.0]
    write_archive(ckpt, header, tree)
    with pytest.raises(ValueError, match=f"state.extra.{foreign}: is not part of {name}'s state"):
        run(get_algorithm(name, **options), problem, config, checkpoint=ckpt, resume=True)

    if kept is not None:
        header, tree = read_archive(_restore(ckpt, honest))
        del tree["state"]["extra"][kept]
        write_archive(ckpt, header, tree)
        with pytest.raises(ValueError, match=f"state.extra.{kept}: .*missing"):
            run(get_algorithm(name, **options), problem, config, checkpoint=ckpt, resume=True)


def _restore(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return path
