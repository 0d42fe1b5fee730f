"""The optimiser protocols ``fslora claims`` evaluates every claim under, side by side.

    sgd    Algorithm 1 as written: H client SGD steps, the server applies the plain average of the
           changes. Each arm's client step is tuned on its own (tuning.py: half the largest stable
           step), since FSLoRA's r/k rescale makes its stable SGD step scale with k/r.
    paper  The paper's runs (docs/spec.md section 5, the paper's ``src/arg.py``): H client AdamW steps
           (betas 0.9, 0.999, eps 1e-8, no weight decay) and a server Adam step on the averaged change
           (betas 0.9, 0.99, eps 1e-6) for the algorithms whose paper code has one (FSLoRA, FedIT,
           HetLoRA), with the client and the server step equal (the paper's gamma = 3e-4 for both).
           FlexLoRA and FLoRA have no server step in their papers' code (the server's model is the
           average product, or the merged stack): their clients run AdamW and the server keeps its
           rule. One step per algorithm, tuned on its claim-1 arm (tuning_paper.py: the lowest mean
           held-out loss on the tuning seeds) and shared by all its arms, as the paper shares one
           gamma across its ablations; AdamW normalises each coordinate's step, which removes most of
           the r/k rescale the per-arm SGD tuning has to follow.
"""
from __future__ import annotations

from dataclasses import dataclass

from fslora_ref.validation import check_choice

# the algorithms whose papers' code applies a server optimiser step (docs/spec.md section 5)
SERVER_STEPPED = ("fslora", "fedit", "hetlora")
CHOICES = ("sgd", "paper", "both")


@dataclass(frozen=True)
class Protocol:
    """How clients and server step, and how the steps are tuned.

    Parameters
    ----------
    name : str
        "sgd" or "paper".
    description : str
        One sentence for the report.
    client_optimizer : str
        ``FedConfig.client_optimizer`` of every arm.
    server_optimizer : str
        ``FedConfig.server_optimizer`` of the algorithms in SERVER_STEPPED (the others: "none").
    tuned_per : str
        "arm" (each arm its own step) or "algorithm" (one step per algorithm, shared by its arms).
    """

    name: str
    description: str
    client_optimizer: str
    server_optimizer: str
    tuned_per: str

    def optimizer_fields(self, algorithm: str, lr: float) -> dict:
        """The FedConfig fields of ``algorithm`` under this protocol at step ``lr``.

        Parameters
        ----------
        algorithm : str
            The algorithm's registry name (``Arm.algorithm``).
        lr : float
            The tuned step: the client's, and the server's where it has an optimiser step.

        Returns
        -------
        dict
            ``client_optimizer`` and, for a server-stepped algorithm under a server optimiser,
            ``server_optimizer`` and ``server_lr`` (empty under plain SGD).
        """
        if self.client_optimizer == "sgd" and self.server_optimizer == "none":
            return {}
        fields = {"client_optimizer": self.client_optimizer}
        if self.server_optimizer != "none" and algorithm in SERVER_STEPPED:
            fields.update(server_optimizer=self.server_optimizer, server_lr=float(lr))
        return fields


PROTOCOLS = {
    "sgd": Protocol("sgd", "client SGD, server plain average of the changes (Algorithm 1); each arm's client step "
                    "tuned on its own", "sgd", "none", "arm"),
    "paper": Protocol("paper", "client AdamW (betas 0.9/0.999, eps 1e-8, no weight decay), server Adam (betas 0.9/0.99, "
                      "eps 1e-6) on the averaged change for FSLoRA, FedIT and HetLoRA, no server step for FlexLoRA and "
                      "FLoRA (their papers' rules); client step = server step, tuned per algorithm", "adamw", "adam",
                      "algorithm"),
}


def protocol(name: str) -> Protocol:
    """The protocol named ``name`` ("sgd" or "paper"); a one-line ValueError otherwise.

    Parameters
    ----------
    name : str

    Returns
    -------
    Protocol
    """
    return PROTOCOLS[check_choice("--protocol", name, tuple(PROTOCOLS))]


def selected(choice: str) -> list:
    """The protocol names of ``--protocol choice``: ["sgd"], ["paper"] or both, sgd first.

    Parameters
    ----------
    choice : {"sgd", "paper", "both"}

    Returns
    -------
    list of str
    """
    check_choice("--protocol", choice, CHOICES)
    return list(PROTOCOLS) if choice == "both" else [choice]
