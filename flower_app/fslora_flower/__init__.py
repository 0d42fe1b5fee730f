"""FSLoRA on Flower: a Strategy whose rules are fslora_ref's, a ServerApp running the
in-process commands' loops, and ClientApps for the NumPy reference and the LLM bridge."""
