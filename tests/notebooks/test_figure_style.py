"""One figure style everywhere (issue 24): the notebooks and the commands' PNGs draw from
``fslora_ref.plotting_style``; notebook cells hold no plotting code; no figure is wider than a slide;
an executed notebook is stale when the package's style changes. Reads files and draws in memory only."""
from __future__ import annotations

import glob
import os
import re
import shutil

import pytest

from fslora_ref import plotting_style as ps

from .nbmodules import NB_DIR, load

ROOT = os.path.dirname(NB_DIR)
publish = load("publish")
# the modules that write the commands' PNGs: fslora simulate, verify (and its ours section), claims, finetune
COMMAND_PLOTS = ("fslora_ref/simulate.py", "theory/report.py", "theory/ours/report.py", "theory/empirical/report.py",
                 "llm_bridge/plots.py")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return fh.read()


def test_the_notebooks_style_is_the_packages():
    plotstyle = load("plotstyle")
    assert plotstyle.ALGORITHMS is ps.ALGORITHMS and plotstyle.algo is ps.algo and plotstyle.figure is ps.figure


@pytest.mark.parametrize("path", COMMAND_PLOTS)
def test_command_figures_use_the_style_not_matplotlib_cycle_colours(path):
    text = read(path)
    assert "plotting_style" in text
    # "C0".."C9" are matplotlib's default cycle: a colour that depends on draw order, not on the algorithm
    assert not re.search(r"""color\s*=\s*f?["']C\{?\d?""", text), f"{path} picks colours from the default cycle"


@pytest.mark.parametrize("src", sorted(glob.glob(os.path.join(NB_DIR, "src", "0[1-6]_*.py"))))
def test_notebook_cells_show_the_idea_not_matplotlib(src):
    text = open(src, encoding="utf-8").read()
    assert "matplotlib" not in text and "plt." not in text, f"{os.path.basename(src)}: plotting belongs in figures_NN.py"
    number = os.path.basename(src)[:2]
    assert re.search(rf"^import figures_{number} as figures", text, re.M)


def test_no_helper_draws_wider_than_a_slide():
    for path in glob.glob(os.path.join(NB_DIR, "*.py")):
        for w in re.findall(r"(?:size|figsize)=\((\d+(?:\.\d+)?),", open(path, encoding="utf-8").read()):
            assert float(w) <= ps.MAX_WIDTH, f"{os.path.basename(path)}: a figure {w} in wide"
    fig, _ = ps.figure(4, size=(15, 3))
    assert fig.get_size_inches()[0] == ps.MAX_WIDTH
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_algorithms_keep_their_colour_and_name_in_every_spelling():
    assert ps.algo("fslora") == ps.algo("FSLoRA") and ps.label("flexlora") == "FlexLoRA" and ps.label("other") == "other"
    assert len({s.color for s in ps.ALGORITHMS.values()}) == len(ps.ALGORITHMS)
    with pytest.raises(ValueError, match="name must be one of"):
        ps.algo("fedavg")
    styles = ps.series_styles(["fslora", "hetlora", "fslora", None])
    assert styles[0]["color"] == styles[2]["color"] == ps.ALGORITHMS["fslora"].color   # a repeat keeps its colour ...
    assert styles[0]["linestyle"] != styles[2]["linestyle"]                             # ... in another line style
    assert styles[1]["color"] == ps.ALGORITHMS["hetlora"].color and styles[3]["color"] not in ps.ALGORITHMS.values()


def test_simulate_png_draws_each_algorithm_in_its_style(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from fslora_ref import simulate
    drawn = {}
    monkeypatch.setattr(simulate, "write_figure", lambda path, fig, **kw: drawn.update(fig=fig))
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    histories = {name: {"loss": [3.0, 2.0, 1.0], "upload_floats": [0, 10, 20]} for name in ps.ALGORITHMS}
    assert simulate.plot_histories(histories, str(tmp_path / "simulate.png")) is None
    for ax in drawn["fig"].axes:
        lines = {ln.get_label(): ln.get_color() for ln in ax.get_lines()}
        assert lines == {s.label: s.color for s in ps.ALGORITHMS.values()}
        assert ax.get_yscale() == "log"
    assert [ax.get_xscale() for ax in drawn["fig"].axes] == ["linear", "log"]   # rounds; uploaded floats
    plt.close(drawn["fig"])


def test_a_notebook_drawing_with_figures_nn_is_stamped_with_the_packages_style(tmp_path):
    """figures_NN.py, plotstyle.py and fslora_ref/plotting_style.py are inputs of the executed notebook: a
    colour changed in the package makes it stale."""
    name = "02_one_round_and_baselines"
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    (tmp_path / "fslora_ref").mkdir()
    src = shutil.copy(os.path.join(NB_DIR, "src", name + ".py"), tmp_path / "notebooks" / "src")
    for helper in ("nbsetup.py", "plotstyle.py", "figures_02.py"):
        shutil.copy(os.path.join(NB_DIR, helper), tmp_path / "notebooks")
    style = shutil.copy(os.path.join(ROOT, publish.STYLE), tmp_path / "fslora_ref")
    pre = str(tmp_path / "notebooks" / "nbsetup.py")
    stamp = publish.inputs(str(src), str(tmp_path), pre)
    assert sorted(stamp) == ["fslora_ref/plotting_style.py", "notebooks/figures_02.py", "notebooks/nbsetup.py",
                             "notebooks/plotstyle.py", f"notebooks/src/{name}.py"]
    with open(style, "a") as fh:          # a colour changed in the package
        fh.write("\nSELECTED = '#000000'\n")
    assert publish.inputs(str(src), str(tmp_path), pre)["fslora_ref/plotting_style.py"] != stamp["fslora_ref/plotting_style.py"]
