"""--device and --dtype of the bridge: specs checked in one line, CUDA asked for on a machine
without it refused before the model loads, bfloat16 runs end to end. Only the CPU path can run
here (no GPU on the test machines)."""
import pytest
import torch

from fslora_cli.main import main
from llm_bridge.device import check_device_spec, resolve_device, torch_dtype
from fslora_cli.finetune import finetune

from helpers import finetune_args

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_device_specs(spec):
    assert check_device_spec(spec) == spec


@pytest.mark.parametrize("spec", ["gpu", "CPU", "cuda:", "cuda:-1", "cuda:0:1", "", None, 0])
def test_bad_device_specs_name_the_option(spec):
    with pytest.raises(ValueError, match=r"--device must be auto, cpu, cuda or cuda:<index>"):
        check_device_spec(spec)


def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="--dtype must be one of float32, bfloat16, float64"):
        torch_dtype("float16")


@no_cuda
def test_cuda_without_cuda_is_a_one_line_error_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import llm_bridge.finetune as ft
    monkeypatch.setattr(ft, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["finetune", "--model", "tiny", "--device", "cuda:1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--device cuda:1: CUDA is not available" in err


def test_bfloat16_runs_end_to_end(tmp_path):
    hist = finetune(finetune_args("--out", str(tmp_path), "--dtype", "bfloat16", "--rounds", "1",
                                  "--no-verify-adapter"))
    row = hist["rounds"][0]
    assert all(torch.isfinite(torch.tensor(c["loss_last"])) for c in row["clients"])
    assert all(c["memory_bytes"] == 2 * c["memory_floats"] for c in row["clients"])     # 2 bytes per float
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
