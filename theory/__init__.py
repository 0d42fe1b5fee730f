"""theory: the paper's claims as executable checks (imports fslora_ref)."""
