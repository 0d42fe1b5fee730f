"""Library side of ``fslora simulate``: FSLoRA and the baselines on one synthetic federated problem.

:func:`run_simulate` runs a :class:`fslora_ref.jobs.SimulateJob` into a directory: it writes
``history.json`` (strict JSON), ``simulate.png`` (loss vs round, loss vs uploaded floats) and one
data-only checkpoint per algorithm; ``resume=True`` continues an interrupted run (only the very
same run: every differing setting is named).
"""
from __future__ import annotations

import io
import os
import sys

import numpy as np

from .algorithms import get_algorithm
from .config import FedConfig
from .federation import algorithm_identity, checkpoint_path, find_checkpoint, load_checkpoint, problem_identity
from .federation import run as run_federated
from .jobs import SimulateJob
from .outputs import check_output_names, prepare_output_dir, write_figure, write_json
from .problems import make_problem
from .progress import Progress


def build(job: SimulateJob):
    """The run a job describes.

    Parameters
    ----------
    job : SimulateJob
        Checked here (one-line errors naming the option) before anything is built.

    Returns
    -------
    problem : Problem
        The job's synthetic problem.
    config : FedConfig
        The run's configuration.
    names : list of str
        The algorithms to run.
    """
    job.check_options()
    names = job.algorithm_names()
    budgets = job.client_budgets()
    dims = {"m": job.m, "n_classes": job.n} if job.family == "logistic" else {"m": job.m, "n": job.n}
    problem = make_problem(job.family, n_clients=job.clients, seed=job.seed,
                           batch_size=job.batch_size or None, **dims)
    return problem, fed_config(job, budgets), names


def fed_config(job: SimulateJob, budgets=None) -> FedConfig:
    """The FedConfig of ``job``.

    Parameters
    ----------
    job : SimulateJob
    budgets : sequence of int, optional
        k_i per client; default the job's own (``job.client_budgets()``). A Flower server passes
        the budgets its SuperNodes announced.

    Returns
    -------
    FedConfig
    """
    return FedConfig(rank=job.rank, budgets=job.client_budgets() if budgets is None else budgets,
                     local_steps=job.local_steps, lr=job.lr, rounds=job.rounds, seed=job.seed,
                     client_optimizer=job.client_optimizer, client_fraction=job.client_fraction,
                     server_optimizer=job.server_optimizer, server_lr=1.0 if job.server_lr is None else job.server_lr)


def plan_resume(out, names, problem, config, identity, resume: bool, announce: bool = True,
                options: dict | None = None) -> dict:
    """Where each algorithm's checkpoint is and whether to resume it.

    Every checkpoint is read and checked before any algorithm runs.

    Parameters
    ----------
    out : str
        The output directory.
    names : list of str
        The algorithms to run.
    problem : Problem
        The run's problem (its layer shapes are checked against a checkpoint's state).
    config : FedConfig
        The run's configuration (a checkpoint must match it).
    identity : dict
        What a checkpoint must match besides the config (:func:`run_identity`).
    resume : bool
        Look for checkpoints to continue.
    announce : bool, default True
        Print a line for a missing checkpoint (False: a check whose run, elsewhere, will
        announce it).
    options : dict, optional
        ``{name: variant options}`` (default: every algorithm's defaults, the FSLoRA paper's
        rules); a checkpoint of another variant is refused.

    Returns
    -------
    dict
        ``{name: (checkpoint path, resume it?, rounds left)}``.
    """
    plan = {}
    for name in names:
        algorithm = get_algorithm(name, **(options or {}).get(name, {}))
        found = find_checkpoint(out, name) if resume else None
        if resume and found is None and announce:
            print(f"fslora simulate: --resume: no checkpoint for {name} in {out}; starting it fresh", file=sys.stderr)
        done = 0
        if found:
            done = load_checkpoint(found, name, config, identity=dict(identity, **algorithm_identity(algorithm)),
                                   layer_shapes=problem.layer_shapes)[2]
        plan[name] = (checkpoint_path(out, name), found is not None, config.rounds - done)
    return plan


def run_identity(job: SimulateJob, problem) -> dict:
    """What a checkpoint of this run must match besides the config.

    Parameters
    ----------
    job : SimulateJob
        The job.
    problem : Problem
        The problem it built.

    Returns
    -------
    dict
        The problem's own identity (:func:`fslora_ref.federation.problem_identity`) and the job
        fields that define it (``m``, ``n``).
    """
    return dict(problem_identity(problem), m=job.m, n=job.n)


def run_simulate(job: SimulateJob, out: str, *, resume: bool = False, progress: bool = True) -> dict:
    """Run ``job`` into the directory ``out``: checkpoints, history.json, simulate.png and the
    summary table (printed).

    Parameters
    ----------
    job : SimulateJob
        Validated first (one-line errors naming the option), before ``out`` is touched.
    out : str
        Output directory (created; an existing file there is an error).
    resume : bool
        Continue from the checkpoints in ``out``, only if they belong to this very job.
    progress : bool
        Draw the progress bar on stderr.

    Returns
    -------
    dict
        {algorithm name: History}.

    Examples
    --------
    >>> import os, tempfile
    >>> from fslora_ref.jobs import SimulateJob
    >>> from fslora_ref.simulate import run_simulate
    >>> job = SimulateJob(clients=2, rank=4, rounds=2, m=6, n=5, algorithms="fslora,fedit")
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> histories = run_simulate(job, out, progress=False)  # doctest: +ELLIPSIS
    algorithm ...
    wrote ...
    >>> sorted(histories), histories["fslora"].n_rounds
    (['fedit', 'fslora'], 2)
    >>> "history.json" in os.listdir(out)
    True
    """
    job.validate()   # every option, before the output directory is touched
    prepare_output_dir(out, "--out")  # before any computation
    check_output_names(out, job.output_names())
    problem, config, names = build(job)
    histories = run_all(job, problem, config, names, out, resume=resume, progress=progress)
    write_results(job, problem, config, histories, out)
    return histories


def run_all(job: SimulateJob, problem, config, names, out: str, *, resume: bool = False, round_fn=None,
            progress: bool = True, run_fn=None) -> dict:
    """Run each algorithm of ``names``, checkpointed in ``out``.

    Parameters
    ----------
    job : SimulateJob
        The job (its identity and variant options).
    problem : Problem
        The problem :func:`build` made.
    config : FedConfig
        The configuration :func:`build` made.
    names : list of str
        The algorithms to run, in order.
    out : str
        The output directory (one checkpoint per algorithm).
    resume : bool, default False
        Continue from the checkpoints in ``out``, only for the very same run.
    round_fn : callable, optional
        As in :func:`fslora_ref.federation.run` (the Flower app runs the same job through it).
    progress : bool, default True
        Draw the progress bar on stderr.
    run_fn : callable, optional
        Runs one algorithm, with :func:`fslora_ref.federation.run`'s signature and result (the
        default); the Flower ServerApp passes one whose rounds Flower's ``Strategy.start`` drives.

    Returns
    -------
    dict
        ``{name: History}``.
    """
    run_fn = run_fn or run_federated
    identity = run_identity(job, problem)
    options = job.algorithm_options()
    plan = plan_resume(out, names, problem, config, identity, resume, options=options)
    left = sum(n for _, _, n in plan.values())
    bar = Progress(len(names) * config.rounds, "simulate", done=len(names) * config.rounds - left,
                   stream=None if progress else io.StringIO())
    histories = {}
    for name, (ckpt, resumed, _) in plan.items():
        def tick(t, row, name=name):
            bar.update(1, f"{name} round {t + 1} loss {row['loss']:.4g}")
        histories[name] = run_fn(get_algorithm(name, **options.get(name, {})), problem, config, checkpoint=ckpt, resume=resumed,
                                        on_round=tick, identity=identity, round_fn=round_fn)
    bar.close()
    return histories


def write_results(job: SimulateJob, problem, config, histories, out: str) -> None:
    """Write history.json and simulate.png in ``out`` and print the summary table.

    Parameters
    ----------
    job : SimulateJob
        The job (recorded with the histories).
    problem : Problem
        Its problem (client sizes are recorded).
    config : FedConfig
        Its configuration.
    histories : dict
        ``{name: History}``.
    out : str
        The output directory.
    """
    result = {"config": dict(config.to_json(), family=job.family, m=job.m, n=job.n,
                             batch_size=job.batch_size, client_sizes=problem.client_sizes),
              "algorithms": {name: h.to_json() for name, h in histories.items()},
              "algorithm_options": {name: opts for name, opts in job.algorithm_options().items() if name in histories}}
    history_path = os.path.join(out, "history.json")
    write_json(history_path, result)
    print(summary_table(histories))
    png = os.path.join(out, "simulate.png")
    why_not = plot_histories(histories, png, title=f"{job.family}: N={config.n_clients}, r={config.rank}, "
                                                   f"budgets {sorted(set(config.budgets))}, H={config.local_steps}")
    print(f"wrote {history_path} and {png}" if why_not is None else f"wrote {history_path} ({why_not})")


def summary_table(histories) -> str:
    """One line per algorithm: final and best loss, communication, peak client memory.

    Parameters
    ----------
    histories : dict
        ``{name: History}``.

    Returns
    -------
    str
        The table, with a header line.
    """
    head = f"{'algorithm':<10} {'final loss':>11} {'best loss':>11} {'uploaded floats':>16} {'downloaded':>12} {'peak client mem (floats)':>26}"
    lines = [head, "-" * len(head)]
    for name, h in histories.items():
        mem = h.peak_client_memory
        lines.append(f"{name:<10} {h['loss'][-1]:>11.5g} {min(h['loss']):>11.5g} {h['upload_floats'][-1]:>16,} "
                     f"{h['download_floats'][-1]:>12,} {f'{min(mem):,}..{max(mem):,}':>26}")
    return "\n".join(lines)


def plot_histories(histories, path, title="") -> str | None:
    """Loss vs round and vs uploaded floats, written atomically to ``path``.

    Never raises for extreme values: a loss range beyond what a log axis can draw is plotted as
    log10 on a linear axis.

    Parameters
    ----------
    histories : dict
        ``{name: History}``.
    path : str
        The PNG to write.
    title : str, optional
        The figure's title.

    Returns
    -------
    str or None
        None if the plot was written, else why not (e.g. matplotlib missing).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from . import plotting_style as ps
    except ImportError:
        return "matplotlib missing: no PNG; pip install 'fslora[plot]'"
    losses = {name: np.asarray(h["loss"], dtype=float) for name, h in histories.items()}
    every = np.concatenate(list(losses.values()))
    positive = every[np.isfinite(every) & (every > 0)]
    as_log10 = positive.size > 0 and (positive.max() > 1e100 or positive.min() < 1e-100)
    label = f"log10 of {ps.LOSS_LABEL}" if as_log10 else ps.LOSS_LABEL
    fig, (ax1, ax2) = ps.figure(2)
    try:
        for name, h in histories.items():
            y = losses[name]
            if as_log10:
                with np.errstate(all="ignore"):
                    y = np.log10(np.where(y > 0, y, np.nan))
            style = ps.algo(name) if ps.algorithm_key(name) else {"label": name}
            ax1.plot(range(len(y)), y, **style)
            ax2.plot(h["upload_floats"], y, **style)
        ps.loss_axes(ax1, x="round", y=label, log=not as_log10)
        ps.loss_axes(ax2, x="upload", y=label, log=not as_log10)
        ax1.set_title("loss vs round")
        ax2.set_title("loss vs communication")
        ps.legend(ax1)
        fig.suptitle(title, fontsize=10)
        write_figure(path, fig, dpi=110)
    except (OverflowError, ValueError, RuntimeError) as exc:  # matplotlib's limits, not the run's
        return f"no PNG: matplotlib could not draw these values ({type(exc).__name__}: {exc})"
    finally:
        plt.close(fig)
    return None
