"""llm_bridge: FSLoRA on real LLM LoRA layers via torch/PEFT (imports fslora_ref)."""
