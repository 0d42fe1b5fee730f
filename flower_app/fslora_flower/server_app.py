"""The ServerApp: the same job as `fslora simulate` / `fslora finetune`, clients on SuperNodes.

It finds which node is which client (discovery.py), then runs the in-process command's own
loop (fslora_ref.simulate.run_all + write_results, or llm_bridge.finetune.finetune) with a
``run_fn`` whose rounds Flower's ``Strategy.start`` drives, one strategy per algorithm
(start_run.py). For simulate, the server holds the model and what the nodes announced
(server_problem.py), never the clients' data, and the clients evaluate the global model on
their own data (simulate_run.py, evaluation.py). For finetune, the bridge's recorder evaluates
the adapter on the server's held-out set in ``start``'s ``evaluate_fn``. So history.json, the
checkpoints and --resume are the in-process command's, and a loopback run reproduces the
in-process one.
Failures end the run with a one-line reason (Flower records it as the run's status
details; ``flower.json`` keeps it too, with the exit code `fslora <job>` gives for that error,
which `fslora flower <job>` then exits with).
"""
from __future__ import annotations

import time

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fslora_ref.errors import exit_code
from fslora_ref.outputs import prepare_output_dir

from .discovery import ANNOUNCED, announced_budgets, discover
from .finetune_data import DATA_KEYS
from .rounds import Ledger
from .settings import Settings

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the job of the run config with its clients on SuperNodes (the ServerApp's entry point).

    Prepares and locks the output directory, discovers which node is which client (budgets the
    nodes announce replace the job's), then runs the in-process command's own loop, each
    algorithm's rounds driven by Flower's ``Strategy.start``: for simulate with the clients
    evaluating (:class:`~fslora_flower.simulate_run.FlowerSimulation`; the server holds no client
    data); for finetune with the server evaluating on its held-out set in ``evaluate_fn``
    (:class:`~fslora_flower.start_run.FlowerRun`). ``<out>/flower.json``
    records the run; a failure is recorded there with its exit code before it is raised.

    Parameters
    ----------
    grid : flwr.server.Grid
        The grid to the SuperNodes.
    context : flwr.app.Context
        The run config (:class:`~fslora_flower.settings.Settings`) and Flower's run id.

    Raises
    ------
    ValueError
        If the run config is invalid or names no output directory, or the job or a node refuses it.
    MissingClients
        If the nodes are not all found, or (``on-missing stop``) a participant gives no usable reply.
    """
    settings = Settings.from_run_config(context.run_config)
    if not settings.out:
        raise ValueError("run config 'out' must name the output directory on the ServerApp's host")
    prepare_output_dir(settings.out, "run config 'out'")
    job, out, resume = settings.args, settings.out, settings.resume
    ledger = Ledger(out, resume=resume, run_id=context.run_id)
    try:
        t0 = time.perf_counter()
        nodes, answers = discover(grid, settings.n_clients, settings.discovery_timeout, settings.poll,
                                  with_answers=True)
        ledger.set(nodes={str(c): str(n) for c, n in sorted(nodes.items())}, discovery_seconds=time.perf_counter() - t0,
                   announced={str(c): {k: a[k] for k in (*ANNOUNCED, *DATA_KEYS) if k in a}
                              for c, a in sorted(answers.items())})
        budgets = announced_budgets(answers, nodes, int(job.rank))
        if budgets is not None:
            # the rounds are planned from what the nodes announced, not from the job's own budgets
            if settings.job == "simulate":
                job = job.replace(budgets=",".join(map(str, budgets)), ratios=None, budget_distribution=None)
            else:
                job = job.replace(budgets=tuple(budgets))
            print(f"fslora flower: budgets announced by the SuperNodes: {budgets}")
        down, _ = settings.wire_dtypes()
        options = dict(on_missing=settings.on_missing, on_bad_update=settings.on_bad_update,
                       max_update_norm=settings.max_update_norm, dtype=down)
        if settings.job == "simulate":
            from fslora_ref.simulate import fed_config, run_all, write_results

            from .server_problem import server_problem
            from .simulate_run import FlowerSimulation
            job.check_options()
            problem = server_problem(job, answers, nodes)       # the model and what the nodes announced: no data
            config, names = fed_config(job), job.algorithm_names()
            held_out = None
            if settings.server_eval_data:    # a server-side held-out set: Strategy.start's evaluate_fn
                from .partition import load_held_out
                held_out = load_held_out(settings.server_eval_data, job, problem.base_weights)
            run_fn = FlowerSimulation(grid, nodes, timeout=settings.round_timeout, poll=settings.poll, ledger=ledger,
                                      held_out=held_out, **options)
            histories = run_all(job, problem, config, names, out, resume=resume, run_fn=run_fn)
            write_results(job, problem, config, histories, out)
        else:
            from llm_bridge.finetune import finetune
            from llm_bridge.job import check_run
            from llm_bridge.summary import summary

            from .finetune_data import gathered
            from .start_run import FlowerRun
            node_data = gathered(answers, nodes, job)   # None: the server derives the clients' data itself
            check_run(job, out, resume=resume, node_local=node_data is not None)
            # the bridge's recorder evaluates the adapter on the server's held-out set, in Strategy.start's evaluate_fn
            run_fn = FlowerRun(grid, nodes, timeout=settings.round_timeout, poll=settings.poll, ledger=ledger, **options)
            print(summary(finetune(job, out, resume=resume, stop_after=settings.stop_after, run_fn=run_fn,
                                   node_data=node_data)))
    except BaseException as exc:
        ledger.set(status="failed", error=" ".join(str(exc).split()) or type(exc).__name__,
                   **{"exit-code": exit_code(exc)})
        raise
    ledger.set(status="completed")
