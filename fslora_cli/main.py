"""``fslora simulate | bench | verify | crosscheck | finetune | flower | claims``.

The command line lives here and nowhere else: one module per command in ``fslora_cli/``
(``configure_parser(parser)`` and ``run(args) -> int``), each turning its options into typed
values (a job) and calling the library. A command's module is imported only when that command
runs, so the NumPy core never imports torch. One parser per command: ``bench --bridge`` and
``claims --llm`` are options of ``bench`` and ``claims``, dispatched on the parsed value.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .parser import CommandParser, package_version

COMMANDS = {
    "simulate": "run FSLoRA and the baselines on a synthetic federated problem",
    "bench": "measure submatrix vs masked client speed (and, with --bridge, the LLM client)",
    "verify": "check every claim of the paper and write a report",
    "crosscheck": "hold an FSLoRA implementation against the reference",
    "finetune": "federated fine-tuning of a real LLM's LoRA layers",
    "flower": "run the simulate / finetune job on a local Flower deployment (SuperLink + SuperNodes)",
    "claims": "the paper's empirical claims over seeds: effect sizes, CIs, a status each",
}


def command_module(name: str):
    """The module implementing ``name`` (fslora_cli.<name>)."""
    return importlib.import_module(f"fslora_cli.{name}")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    # every parser of every command is a CommandParser (subparsers take their parent's class):
    # one-line errors, exit 2
    parser = CommandParser(prog="fslora", description="Federated Sketching LoRA reference toolkit; the options' "
                                                      "shared vocabulary: docs/guides/cli.md")
    parser.add_argument("--version", action="version", version=f"fslora {package_version()}",
                        help="print fslora's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:  # import only the module we need
            command_module(name).configure_parser(p)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if a in COMMANDS), None)
    if selected is None and "--version" in argv:   # answered before any command module is imported
        print(f"fslora {package_version()}")
        return 0
    try:
        parser = build_parser(selected)
    except ImportError as exc:
        print(f"fslora {selected}: missing dependency ({exc}); install with: pip install -e '.[all]'", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    # imported only now: a command module may set the BLAS thread count before numpy is first imported
    from fslora_ref import output_lock
    from fslora_ref.errors import USER_ERRORS
    output_lock.COMMAND_LINE = "fslora " + " ".join(argv)   # the lock's record names the holder's command
    try:
        return int(command_module(args.command).run(args) or 0)
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
