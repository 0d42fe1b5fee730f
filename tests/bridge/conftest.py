"""Bridge tests need torch/transformers/peft; skip the directory cleanly without them."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
