"""What the ServerApp holds of a NumPy reference problem: the frozen model, not the clients' data.

The server plans rounds and aggregates with the layer shapes, the base weights W0 (the model,
drawn from the job's recipe without any client's samples: ``fslora_ref.problems.families.base_model``)
and what each SuperNode announced at discovery: its number of samples n_i (FedIT, FlexLoRA and
FLoRA may weight by it) and the SHA-256 of its samples (the run's checkpoint identity). The
clients' samples never reach the server: a ServerProblem has no ``clients``, and the one thing
the reference's code asks of a client's data on the server side, the loss of client i at some
factors (naming the client whose local training diverged), is asked of that client's node.
"""
from __future__ import annotations

import re

from fslora_ref.problems.families import base_model

DIGEST = re.compile(r"[0-9a-f]{64}$")


class ServerProblem:
    """The server's view of a federated ``fslora_ref`` problem.

    Parameters
    ----------
    name : str
        The problem family (recorded in checkpoints).
    link : {"squared", "softmax"}
        The final link.
    base_weights : list of ndarray
        W0_l, shape (m_l, n_l).
    client_sizes : list of int
        n_i per client, as the nodes announced them.
    client_digests : list of str
        SHA-256 of each client's samples, as the nodes announced them.
    batch_size : int or None
        The clients' minibatch size (None: full batch).
    remote_loss : callable, optional
        ``remote_loss(client, factors) -> float``: client i's full-data loss at LayerFactors,
        computed on its node (only the divergence diagnosis asks for it).
    """

    def __init__(self, name, link, base_weights, client_sizes, client_digests, batch_size=None, remote_loss=None):
        self.name, self.link, self.base_weights = name, link, list(base_weights)
        self.client_sizes, self.client_digests = [int(n) for n in client_sizes], list(client_digests)
        self.batch_size, self.remote_loss = batch_size, remote_loss

    @property
    def n_clients(self) -> int:
        return len(self.client_sizes)

    @property
    def n_layers(self) -> int:
        return len(self.base_weights)

    @property
    def layer_shapes(self) -> list:
        return [W.shape for W in self.base_weights]

    def loss_and_factor_grads(self, client, factors, batch=None):
        """Client ``client``'s full-data loss at ``factors``, computed on its node.

        Parameters
        ----------
        client : int
            The client.
        factors : list of LayerFactors
            One per layer.
        batch : None
            Only the full data can be asked for.

        Returns
        -------
        loss : float
        grads : None
            Never computed for the server (see the module docstring).
        """
        if self.remote_loss is None or batch is not None:
            raise RuntimeError("the server holds no client data: a client's loss is computed on its node")
        return self.remote_loss(int(client), factors), None


def server_problem(job, answers: dict, nodes: dict) -> ServerProblem:
    """The ServerProblem of the SimulateJob ``job`` from the nodes' discovery answers.

    Parameters
    ----------
    job : SimulateJob
        The job (family, dimensions, seed, batch size).
    answers : dict
        ``{client: answer}``; each answer has ``client-size`` (int >= 1) and ``data-sha256``.
    nodes : dict
        ``{client: node id}`` (named in errors).

    Returns
    -------
    ServerProblem

    Raises
    ------
    ValueError
        Naming the node whose answer lacks or garbles its size or digest.
    """
    dims = {"m": job.m, "n_classes": job.n} if job.family == "logistic" else {"m": job.m, "n": job.n}
    link, weights = base_model(job.family, seed=job.seed, **dims)
    sizes, digests = [], []
    for client in range(int(job.clients)):
        answer = answers[client]
        size, digest = answer.get("client-size"), answer.get("data-sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or not DIGEST.match(str(digest)):
            raise ValueError(f"partition-id {client} (node {nodes[client]}) announced no valid client-size/data-sha256 "
                             f"(got {size!r}, {digest!r}): its fslora is not this server's")
        sizes.append(size)
        digests.append(str(digest))
    return ServerProblem(job.family, link, weights, sizes, digests, batch_size=job.batch_size or None)
