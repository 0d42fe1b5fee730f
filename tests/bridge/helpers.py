"""Shared helpers for bridge tests: parse finetune arguments like the CLI does."""
import argparse

from fslora_cli import finetune as cli

TINY = ["--model", "tiny", "--rank", "8", "--lora-alpha", "16", "--clients", "2", "--ratios", "0.25,0.5",
        "--rounds", "3", "--local-steps", "2", "--batch-size", "2", "--lr", "0.02", "--examples-per-client", "12",
        "--eval-per-family", "3", "--eval-every", "1", "--threads", "1"]


def finetune_args(*extra):
    p = argparse.ArgumentParser()
    cli.configure_parser(p)
    return p.parse_args([*TINY, *extra])
