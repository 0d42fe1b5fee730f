"""The mathematics the claims rest on, computed exactly where possible: the sketch's moments, the
sketched objective f^S and its gradients, Hessians of the sketch law, batched point statistics,
the theorem's constants and bounds, certified lower bounds, and plain FedAvg written from scratch.
Imports fslora_ref only; nothing else in theory/."""
