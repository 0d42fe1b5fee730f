"""``fslora simulate | bench | verify | crosscheck | finetune``.

Each subcommand lives in the package that owns it (``<package>/cli.py`` exposing
``configure_parser(parser)`` and ``run(args) -> int``) and is imported only when used, so
the NumPy core never imports torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "simulate": ("fslora_ref.cli_simulate", "run FSLoRA and the baselines on a synthetic federated problem"),
    "bench": ("fslora_ref.cli_bench", "measure submatrix vs masked client speed (and, with --bridge, the LLM client)"),
    "verify": ("theory.cli", "check every claim of the paper and write a report"),
    "crosscheck": ("fslora_ref.conformance.cli", "hold an FSLoRA implementation against the reference"),
    "finetune": ("llm_bridge.cli", "federated fine-tuning of a real LLM's LoRA layers"),
    "flower": ("fslora_cli.flower", "run the simulate / finetune job on a local Flower deployment (SuperLink + SuperNodes)"),
    "claims": ("theory.empirical.cli", "the paper's empirical claims over seeds: effect sizes, CIs, a status each"),
}


class UserError(Exception):
    """An error whose message is the whole story (printed as one line, exit code 2)."""


# what a subcommand raises for bad input or a run that cannot go on: one line, exit code 2
# (OSError: a full disk, a quota, a file the OS refuses -- the message names the file; outputs.py
# words the writes' own errors, this catches the rest)
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, UserError)


def exit_code(exc: BaseException) -> int:
    """The code `fslora` exits with when a subcommand raises ``exc``: 2 (USER_ERRORS), 130 (interrupt),
    else 1. The Flower ServerApp records it so that `fslora flower <job>` exits as `fslora <job>` would."""
    return 2 if isinstance(exc, USER_ERRORS) else 130 if isinstance(exc, KeyboardInterrupt) else 1


def command_module(name: str, argv) -> str:
    """The module implementing ``name``; the LLM client benchmark (--bridge) lives in the bridge."""
    if name == "bench" and "--bridge" in argv:
        return "llm_bridge.bench"
    if name == "claims" and "--llm" in argv:
        return "llm_bridge.claims"
    return COMMANDS[name][0]


def build_parser(selected: str | None = None, module: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fslora", description="Federated Sketching LoRA reference toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:  # import only the module we need
            importlib.import_module(module).configure_parser(p)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if a in COMMANDS), None)
    module_name = command_module(selected, argv) if selected else None
    try:
        parser = build_parser(selected, module_name)
    except ImportError as exc:
        print(f"fslora {selected}: missing dependency ({exc}); install with: pip install -e '.[all]'", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    module = importlib.import_module(module_name)
    from fslora_ref import output_lock
    output_lock.COMMAND_LINE = "fslora " + " ".join(argv)
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"fslora {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fslora {args.command}: interrupted (completed rounds are kept in the checkpoint, if any)", file=sys.stderr)
        return 130
    finally:
        output_lock.release_all()  # the outputs are complete (or the command failed): others may write


if __name__ == "__main__":
    sys.exit(main())
