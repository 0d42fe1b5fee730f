"""The README is a short front door that works as written: at most 12,000 characters, the two setup
commands first (and they exist in the Makefile, the second being what CI runs), every ```python block
marked ``<!-- test -->`` runs (in order, one namespace, in a temporary directory), and every relative
link points at a file of the repository. The detail the README used to hold lives in docs/ (the
guides' own tests check it there)."""
from __future__ import annotations

import os
import re
import tempfile

import pytest

from .sitecheck import ROOT

README = os.path.join(ROOT, "README.md")
MAX_CHARS = 12_000
MARKED_PYTHON = re.compile(r"^<!-- test -->\n```python\n(.*?)^```", re.S | re.M)
ANY_PYTHON = re.compile(r"^```python\n", re.M)
SHELL_LANGUAGES = ("bash", "sh", "shell", "console", "")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def readme() -> str:
    with open(README, encoding="utf-8") as fh:
        return fh.read()


def shell_commands(text: str) -> list:
    """The commands of the README's shell blocks (```bash, ```sh, ```console or unlabelled), in order,
    comments and blank lines dropped. Fences are paired in order, so a closing fence never opens a block."""
    commands, language = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
            continue
        if language in SHELL_LANGUAGES:
            command = line.split("#", 1)[0].strip().lstrip("$ ").strip()
            if command:
                commands.append(command)
    return commands


def run_marked_blocks(text: str, name: str = "README.md") -> dict:
    namespace = {"__name__": "__readme_example__"}
    for i, code in enumerate(MARKED_PYTHON.findall(text)):
        exec(compile(code, f"{name}[python block {i}]", "exec"), namespace)
    return namespace


def test_the_readme_is_at_most_12000_characters():
    assert len(readme()) <= MAX_CHARS, f"README.md has {len(readme())} characters (at most {MAX_CHARS})"


def test_the_first_two_commands_are_the_setup_and_they_exist():
    assert shell_commands(readme())[:2] == ["make demo", "make test"]
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as fh:
        makefile = fh.read()
    assert re.search(r"^demo: .*\n\t\$\(VENV\)/bin/fslora simulate ", makefile, re.M), "make demo runs the main job"
    assert re.search(r"^test: .*\n\t\$\(PY\) -m pytest ", makefile, re.M), "make test runs the test suite"
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as fh:
        assert re.search(r"^make test$", fh.read(), re.M), "CI runs the README's test command"


def test_shell_commands_skip_other_blocks():
    text = "```text\nnot a command\n```\nprose\n```bash\nmake demo   # setup\n$ make test\n```\n"
    assert shell_commands(text) == ["make demo", "make test"]


def test_every_python_block_is_marked_to_run():
    """An unmarked block would escape the test below; the README has none."""
    text = readme()
    assert len(ANY_PYTHON.findall(text)) == len(MARKED_PYTHON.findall(text)) >= 1


def test_the_python_quick_start_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))    # the quick start's mkdtemp lands here
    namespace = run_marked_blocks(readme())
    printed = capsys.readouterr().out
    # the job wrote what `fslora simulate --out` writes; the protocol loop ended at `run`'s model
    assert namespace["out"].startswith(str(tmp_path))
    assert os.path.exists(os.path.join(namespace["out"], "history.json"))
    assert set(namespace["histories"]) == {"fslora", "hetlora"}
    assert namespace["loss"] == namespace["history"]["loss"][-1] < namespace["history"]["loss"][0]
    assert "fslora loss" in printed and "loss" in printed


def test_a_stale_quick_start_fails():
    """The teeth: a README still calling a renamed keyword must raise, not pass."""
    stale = "<!-- test -->\n```python\nfrom fslora_ref import FedConfig\nFedConfig(rank=4, budget=(1, 2))\n```\n"
    with pytest.raises(TypeError, match="budget"):
        run_marked_blocks(stale, "stale.md")


def test_every_relative_link_of_the_readme_exists():
    missing = [target for target in LINK.findall(readme())
               if "://" not in target and not os.path.exists(os.path.join(ROOT, target))]
    assert missing == []
