"""llm_bridge: FSLoRA on real LLM LoRA layers via torch/PEFT (imports fslora_ref).

Importing the package is cheap (no torch); it only makes sure no model hub is contacted.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
