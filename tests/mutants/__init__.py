"""Every deliberately broken implementation the tests use to show a check has teeth, in one place.

- one module per conformance mutant (listed in ``MUTANTS``), for the conformance battery;
- ``core_mutants``: Algorithm subclasses breaking one property each (tests/core/test_properties.py)
  and the pre-issue-11 public-API functions (tests/core/test_fuzz.py);
- ``baseline_mutants``: one defect per baseline invariant (tests/core/test_invariants.py), and
  ``baseline_defects``: third-party-style baselines that ``fslora crosscheck --algorithm`` catches;
- ``theory_mutants``: broken sketch laws, samplers, objectives, bounds and Algorithm subclasses that
  `fslora verify`'s claims must catch (tests/theory/).

Each conformance mutant module exposes ``impl`` (``fslora crosscheck tests.mutants.<name>:impl``) and ``DEFECT``,
and ``tests/conformance/test_mutants.py`` asserts exactly which checks it fails. They are built
from the reference adapter (fslora_ref.conformance.reference) by overriding one hook. The last
three declare other optimisers (``optimizers``) and break what the declaration promises.
"""
MUTANTS = ("no_sketch", "independent_sets", "missing_scale", "double_scale", "per_coordinate_mean",
           "redraw_each_step", "weight_decay_unselected", "first_k", "contiguous_window", "with_replacement",
           "shared_across_layers", "full_rank_skipped", "adamw_missing_scale", "adamw_decay_unselected",
           "server_lr_ignored", "leaky_mask", "writes_inputs")
