"""The batched answer-only loss equals the loss computed one unpadded sequence at a time."""
import numpy as np
import torch

from llm_bridge.data import FAMILIES, dirichlet_partition
from llm_bridge.models import tiny_llama
from llm_bridge.peft_layers import LoraLayers, add_lora
from llm_bridge.task import InstructionTask, evaluate, generate


def test_batched_loss_matches_per_sequence_loss():
    model, tok = tiny_llama(seed=2, dtype=torch.float64)
    pm = add_lora(model, 4, 8.0, ["q_proj", "v_proj"])
    g = torch.Generator().manual_seed(0)
    for mod in LoraLayers(pm).modules:  # a non-zero adapter, so LoRA is part of what is checked
        torch.nn.init.normal_(mod.lora_A["default"].weight, std=0.3, generator=g)
        torch.nn.init.normal_(mod.lora_B["default"].weight, std=0.3, generator=g)
    task = InstructionTask(tok, dirichlet_partition(1, list(FAMILIES), 12, 1.0, 0), batch_size=5)
    batch = task.sample_batch(0, np.random.default_rng(0))
    got = task.loss(pm, batch)
    total, count = 0.0, 0
    for j in batch[1]:
        p, t = task.clients[0][j]
        ids = torch.tensor([p + t])
        logits = pm(input_ids=ids).logits[0]
        lp = torch.log_softmax(logits, -1)
        for pos in range(len(p), len(p) + len(t)):
            total -= float(lp[pos - 1, ids[0, pos]])
            count += 1
    assert abs(float(got) - total / count) <= 1e-10 * abs(total / count)


def test_batched_generation_matches_single_prompt_generation():
    model, tok = tiny_llama(seed=3, dtype=torch.float64)
    model = add_lora(model, 4, 8.0, ["q_proj", "v_proj", "o_proj"])
    g = torch.Generator().manual_seed(0)
    for mod in LoraLayers(model).modules:  # push the random model away from its constant output
        torch.nn.init.normal_(mod.lora_A["default"].weight, std=1.0, generator=g)
        torch.nn.init.normal_(mod.lora_B["default"].weight, std=1.0, generator=g)
    prompts = [e.prompt for e in dirichlet_partition(1, list(FAMILIES), 6, 1.0, 1)[0]]
    batched = generate(model, tok, prompts, max_new_tokens=6, batch_size=6)
    single = [generate(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1
