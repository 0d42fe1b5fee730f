"""Deliberately broken FSLoRA implementations, one defect each, for the conformance battery.

Each module exposes ``impl`` (``fslora crosscheck tests.mutants.<name>:impl``) and ``DEFECT``,
and ``tests/conformance/test_mutants.py`` asserts exactly which checks it fails. They are built
from the reference adapter (fslora_ref.conformance.reference) by overriding one hook. The last
three declare other optimisers (``optimizers``) and break what the declaration promises.
"""
MUTANTS = ("no_sketch", "independent_sets", "missing_scale", "double_scale", "per_coordinate_mean",
           "redraw_each_step", "weight_decay_unselected", "first_k", "contiguous_window", "with_replacement",
           "shared_across_layers", "full_rank_skipped", "adamw_missing_scale", "adamw_decay_unselected",
           "server_lr_ignored", "leaky_mask", "writes_inputs")
