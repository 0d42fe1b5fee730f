"""The Python examples of the documentation pages run as written: every ```python block of a page,
in order, in one namespace (a later block may use an earlier one's names), on a non-interactive
matplotlib backend. A page whose example stops matching the API fails here."""
from __future__ import annotations

import os
import re

import pytest

from .sitecheck import DOCS

PAGES = ["getting-started.md", "guides/own-problem.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(page: str) -> list:
    with open(os.path.join(DOCS, page), encoding="utf-8") as fh:
        return BLOCK.findall(fh.read())


def run_blocks(found: list, name: str) -> dict:
    namespace = {"__name__": "__docs_example__"}
    for i, code in enumerate(found):
        exec(compile(code, f"{name}[python block {i}]", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("page", PAGES)
def test_the_python_examples_of_a_page_run(page, monkeypatch, capsys):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    found = blocks(page)
    assert found, f"{page} has no python example"
    run_blocks(found, page)
    printed = capsys.readouterr().out
    assert "loss" in printed or "f(W0)" in printed, printed    # the examples print what they computed


def test_the_quick_start_reproduces_run_with_the_protocol_loop():
    """getting-started's loop over the protocol ends at the model `run` ends at (same seed, same draws)."""
    namespace = {"__name__": "__docs_example__"}
    for code in blocks("getting-started.md"):
        if "plt." not in code:
            exec(compile(code, "getting-started.md", "exec"), namespace)
    ns = namespace
    assert ns["problem"].global_loss(ns["weights"]) == ns["history"]["loss"][-1]
    assert ns["history"]["loss"][-1] < ns["history"]["loss"][0]


def test_an_example_that_no_longer_matches_the_api_fails():
    """The teeth: a page still calling a renamed keyword (``budget=`` for ``budgets=``) must raise."""
    stale = "```python\nfrom fslora_ref import FedConfig\nconfig = FedConfig(rank=4, budget=(1, 2))\n```\n"
    with pytest.raises(TypeError, match="budget"):
        run_blocks(BLOCK.findall(stale), "stale.md")
