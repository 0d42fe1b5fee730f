"""Client objectives on a causal LM: minibatches of a client's examples, the loss on answer
tokens only, and batched greedy evaluation by exact match.

A *task* is what the bridge client trains on; it has the same two methods as a
``fslora_ref`` problem's sampling plus a torch loss:

    batch = task.sample_batch(client, rng)   # rng: the (round, client) "batch" stream
    loss = task.loss(model, batch)           # a scalar torch tensor
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from fslora_ref.validation import check_int

from .device import module_device

PAD_MULTIPLE = 16


class InstructionTask:
    """Supervised fine-tuning on prompt -> target with the loss on target tokens (+ EOS) only.

    Parameters
    ----------
    tokenizer : tokenizer
        The model's tokenizer (examples are encoded once, here).
    client_examples : list of list of Example
        Each client's training examples (none may be empty).
    batch_size : int
        b, examples per local step.
    """

    def __init__(self, tokenizer, client_examples, batch_size: int):
        self.tok = tokenizer
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.clients = []
        for i, exs in enumerate(client_examples):
            if not exs:
                raise ValueError(f"client {i} has no training examples; raise per-client data or lower n_clients")
            self.clients.append([encode_pair(tokenizer, e.prompt, e.target) for e in exs])

    @property
    def client_sizes(self) -> list:
        """The clients' numbers of training examples."""
        return [len(c) for c in self.clients]

    def sample_batch(self, client: int, rng: np.random.Generator):
        """b examples of ``client`` without replacement (fewer if the client is small).

        Parameters
        ----------
        client : int
            The client.
        rng : numpy.random.Generator
            Its batch stream.

        Returns
        -------
        tuple
            ``(client, sorted row indices)``.
        """
        n = len(self.clients[client])
        return client, np.sort(rng.choice(n, size=min(self.batch_size, n), replace=False))

    def loss(self, model, batch):
        """Mean cross-entropy of the batch's target tokens (and EOS) given their prompts.

        Parameters
        ----------
        model : torch.nn.Module
            The causal LM.
        batch : tuple
            What :meth:`sample_batch` returned.

        Returns
        -------
        torch.Tensor
            A scalar.
        """
        import torch
        client, rows = batch
        pairs = [self.clients[client][j] for j in rows]
        # left padding puts every target at the end, so only the last T+1 positions need logits
        # (the vocabulary projection is a large share of a small model's step); the width is
        # rounded up to a multiple of PAD_MULTIPLE so few distinct shapes reach the kernels
        width = -(-max(len(p) + len(t) for p, t in pairs) // PAD_MULTIPLE) * PAD_MULTIPLE
        tail = max(len(t) for _, t in pairs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(pairs), width), pad, dtype=torch.long)
        labels = torch.full((len(pairs), tail), -100, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for r, (p, t) in enumerate(pairs):
            seq = p + t
            ids[r, width - len(seq):] = torch.tensor(seq)
            mask[r, width - len(seq):] = 1
            labels[r, tail - len(t):] = torch.tensor(t)
        positions = (mask.cumsum(1) - 1).clamp(min=0)   # as generate() derives them from the mask
        device = module_device(model)
        ids, mask, labels, positions = ids.to(device), mask.to(device), labels.to(device), positions.to(device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=tail + 1).logits
        # logits at position j predict token j+1: the last tail+1 positions predict the last tail tokens
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision -> float32
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1), ignore_index=-100)


def encode_pair(tok, prompt: str, target: str):
    """Token ids of a training pair; the prompt is encoded exactly as in evaluation.

    Parameters
    ----------
    tok : tokenizer
    prompt : str
    target : str

    Returns
    -------
    prompt_ids : list of int
    target_ids : list of int
        The target's ids followed by EOS.
    """
    return encode_prompt(tok, prompt), list(tok(target, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]


def encode_prompt(tok, prompt: str) -> list:
    """The prompt's token ids, without special tokens.

    Parameters
    ----------
    tok : tokenizer
    prompt : str

    Returns
    -------
    list of int
    """
    return list(tok(prompt, add_special_tokens=False)["input_ids"])


def generate(model, tok, prompts, max_new_tokens: int, batch_size: int = 64) -> list:
    """Greedy continuations of ``prompts`` (left-padded batches, KV cache).

    Parameters
    ----------
    model : torch.nn.Module
        The causal LM.
    tok : tokenizer
    prompts : list of str
    max_new_tokens : int
        The longest continuation.
    batch_size : int, default 64
        Prompts per generation batch.

    Returns
    -------
    list of str
        One per prompt, special tokens removed, cut at EOS.
    """
    import torch
    outs = []
    pad = tok.pad_token_id
    for start in range(0, len(prompts), batch_size):
        enc = [encode_prompt(tok, p) for p in prompts[start:start + batch_size]]
        width = max(map(len, enc))
        ids = torch.full((len(enc), width), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for r, e in enumerate(enc):
            ids[r, width - len(e):] = torch.tensor(e)
            mask[r, width - len(e):] = 1
        device = module_device(model)
        with torch.no_grad():
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=tok.eos_token_id)
        for row in gen[:, width:]:
            row = row.tolist()
            if tok.eos_token_id in row:
                row = row[:row.index(tok.eos_token_id)]
            outs.append(tok.decode(row, skip_special_tokens=True))
    return outs


def evaluate(model, tok, examples, max_new_tokens: int | None = None, batch_size: int = 64) -> dict:
    """Accuracy per family and overall ('mean' = unweighted mean over families).

    Parameters
    ----------
    model : torch.nn.Module
        The causal LM.
    tok : tokenizer
    examples : list of Example
        The held-out examples.
    max_new_tokens : int, optional
        Default: the longest target in tokens + 1.
    batch_size : int, default 64
        Prompts per generation batch.

    Returns
    -------
    dict
        ``"accuracy"`` per family, ``"mean"``, ``"n"`` per family, ``"generated_sha1"`` (identifies
        the generations exactly) and a few ``"samples"``.
    """
    if max_new_tokens is None:
        max_new_tokens = 1 + max(len(tok(e.target, add_special_tokens=False)["input_ids"]) for e in examples)
    texts = generate(model, tok, [e.prompt for e in examples], max_new_tokens, batch_size)
    hits = defaultdict(list)
    for e, t in zip(examples, texts):
        hits[e.family].append(bool(e.is_correct(t)))
    acc = {fam: float(np.mean(h)) for fam, h in sorted(hits.items())}
    digest = hashlib.sha1("\x00".join(texts).encode()).hexdigest()  # identifies the generations exactly
    return {"accuracy": acc, "mean": float(np.mean(list(acc.values()))), "n": {f: len(h) for f, h in hits.items()},
            "generated_sha1": digest,
            "samples": [{"prompt": e.prompt[-60:], "generated": t, "answer": e.answer}
                        for e, t in list(zip(examples, texts))[:: max(1, len(examples) // 8)]]}
