"""FedIT's server rule written the way FLoRA's own code writes it (ATP-1010/FederatedLLM
``fed_utils/model_aggregation.py``, ``FedAvg``: a data-size-weighted sum over the clients' PEFT
adapter state dicts), checked through the PEFT state-dict adapter:

    fslora crosscheck --algorithm fedit examples/peft_fedit_state_dicts.py:impl
    # aggregation checks pass; rounds_match_reference is inconclusive (the adapter runs no rounds): exit 3

``buggy`` is the same loop with that file's misspelt accumulator (``weighted_sindgle_weights``), which
keeps only the first client: ``fslora crosscheck --algorithm fedit examples/peft_fedit_state_dicts.py:buggy``
fails (exit 1) and says so.
"""
import torch

from llm_bridge.peft_baselines import PeftStateDictBaseline


def fedavg(server, clients, client_sizes, **_):
    weights = torch.tensor(client_sizes, dtype=torch.float64)
    weights = weights / weights.sum()
    for k, single_weights in enumerate(clients):
        if k == 0:
            weighted_single_weights = {key: single_weights[key] * weights[k] for key in single_weights}
        else:
            weighted_single_weights = {key: weighted_single_weights[key] + single_weights[key] * weights[k]
                                       for key in single_weights}
    return weighted_single_weights


def fedavg_with_typo(server, clients, client_sizes, **_):
    weights = torch.tensor(client_sizes, dtype=torch.float64)
    weights = weights / weights.sum()
    for k, single_weights in enumerate(clients):
        if k == 0:
            weighted_single_weights = {key: single_weights[key] * weights[k] for key in single_weights}
        else:
            weighted_sindgle_weights = {key: weighted_single_weights[key] + single_weights[key] * weights[k]  # noqa: F841
                                        for key in single_weights}
    return weighted_single_weights


impl = PeftStateDictBaseline(fedavg, "fedit", options={"weighting": "data_size"})
buggy = PeftStateDictBaseline(fedavg_with_typo, "fedit", options={"weighting": "data_size"})
