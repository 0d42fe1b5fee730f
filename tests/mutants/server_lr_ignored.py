"""Mutant: declares a server SGD step with server_lr = 0.5 on the pseudo-gradient, but applies the
plain average of the clients' changes."""
from dataclasses import replace

from fslora_ref.conformance.reference import ReferenceImplementation, average_over_clients

DEFECT = "declared server learning rate not applied"


class ServerLrIgnored(ReferenceImplementation):
    name = "mutant:server_lr_ignored"
    optimizers = {"server": "sgd", "server_lr": 0.5}

    def aggregate(self, task, index_sets, uploads):
        return average_over_clients(replace(task, server_optimizer="average"), index_sets, uploads)


impl = ServerLrIgnored()
