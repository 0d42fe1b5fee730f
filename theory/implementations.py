"""The implementation under test, as the algorithm-level claims see it: something that runs rounds.

    runner = runner_for(obj)                                  # or load_runner("examples/numpy_fslora.py:impl")
    new_layers = runner.run(problem, config, layers, round_index)   # one round of FSLoRA from `layers`
    iterates = trajectory(runner, problem, config, init_layers)    # X^0 .. X^T (DivergenceError if non-finite)

A *round runner* has one method, ``run(problem, config, layers, round_index) -> [(B, A)]``: one full
round of Algorithm 1 (every client, H local steps, the server's average) starting from the global
factors ``layers`` = [(B_l: (m_l, r), A_l: (r, n_l))], with rank, budgets k_i, lr, H, scaling from
``config`` (a ``FedConfig``). Its random draws are keyed by (config.seed, round_index, client), so
round t of seed s is reproducible on its own and different rounds/seeds draw independently. Two kinds:

* :class:`AlgorithmRunner`: an ``fslora_ref.algorithms.Algorithm`` through the reference's real code
  path ``fslora_ref.federation.run_round`` (the default is the reference ``FSLoRA``; subclasses such
  as the mutants in tests/ run the same way);
* :class:`ProtocolRunner`: any object speaking the conformance protocol
  (``fslora_ref/conformance/protocol.py``): ``black_box_round`` (it draws its own sketches) if it has
  one, else ``white_box_round`` with index sets drawn by the reference's sampler from the same
  (seed, round, client, layer) streams. Clients are full-batch gradient oracles over W
  (``ProblemOracle``), so a ProtocolRunner runs full-batch problems only.

``name`` and ``describe()`` say what runs; ``is_reference`` is True only for the unmodified reference,
whose runs the claims then share with the measurement of the constants.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import FSLoRA, get_algorithm
from fslora_ref.algorithms.fslora import draw_round_sketches
from fslora_ref.algorithms.protocol import Algorithm, ServerState
from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig
from fslora_ref.conformance.protocol import ProblemOracle, RoundTask, dtype_of
from fslora_ref.federation import run_round


class AlgorithmRunner:
    """Rounds of an ``Algorithm`` via ``fslora_ref.federation.run_round`` (the reference's own path).

    Parameters
    ----------
    algorithm : fslora_ref.algorithms.protocol.Algorithm or None, optional
        The algorithm (None: the reference FSLoRA).
    """

    def __init__(self, algorithm: Algorithm | None = None):
        self.algorithm = algorithm if algorithm is not None else get_algorithm("fslora")
        self.name = "reference" if self.is_reference else f"{type(self.algorithm).__module__}.{type(self.algorithm).__name__}"

    @property
    def is_reference(self) -> bool:
        return type(self.algorithm) is FSLoRA

    @property
    def has_forms(self) -> bool:
        """The submatrix / masked client forms of FSLoRA exist (``config.form``)."""
        return isinstance(self.algorithm, FSLoRA)

    def describe(self) -> str:
        """What runs, in one line.

        Returns
        -------
        str
        """
        return f"{self.name} (fslora_ref.federation.run_round)"

    def run(self, problem, config: FedConfig, layers, round_index: int) -> list:
        """One full round of Algorithm 1 from ``layers``: every client, H local steps, the server's average.

        Parameters
        ----------
        problem : fslora_ref.problems.Problem
            The problem.
        config : fslora_ref.config.FedConfig
            Rank, budgets k_i, lr, H, scale and seed of the run.
        layers : list of (ndarray, ndarray)
            The global factors at the round's start, ``[(B_l: (m_l, r), A_l: (r, n_l))]``.
        round_index : int
            t (keys the round's random draws with ``config.seed``).

        Returns
        -------
        list of (ndarray, ndarray)
            The new global factors ``[(B_l: (m_l, r), A_l: (r, n_l))]``, float64.
        """
        state = ServerState([(np.array(B, dtype=float), np.array(A, dtype=float)) for B, A in layers])
        new, _, _ = run_round(self.algorithm, state, problem, config, round_index)
        return new.layers


class ProtocolRunner:
    """Rounds of a conformance-protocol implementation on full-batch ``ProblemOracle`` clients.

    Uses the implementation's ``black_box_round`` (it draws its own sketches) if it has one, else
    ``white_box_round`` with index sets drawn by the reference's sampler.

    Parameters
    ----------
    impl : object
        The implementation (``fslora_ref/conformance/protocol.py``).
    name : str or None, optional
        Its name in reports (default: its ``name`` attribute or class name).

    Raises
    ------
    TypeError
        If ``impl`` has neither ``black_box_round`` nor ``white_box_round``.
    """

    is_reference = False
    has_forms = False
    runs_minibatches = False    # its clients are full-batch ProblemOracles

    def __init__(self, impl, name: str | None = None):
        self.impl = impl
        self.dtype = dtype_of(impl)
        if callable(getattr(impl, "black_box_round", None)):
            self.mode = "black"
        elif callable(getattr(impl, "white_box_round", None)):
            self.mode = "white"
        else:
            raise TypeError(f"{_label(impl)} has neither black_box_round(task) nor white_box_round(task) "
                            f"(see fslora_ref/conformance/protocol.py); `fslora verify --impl` needs one of them")
        self.name = name or _label(impl)

    def describe(self) -> str:
        """What runs and how it is driven, in one line.

        Returns
        -------
        str
        """
        how = ("black_box_round: its own sketches" if self.mode == "black" else
               "white_box_round: index sets from the reference's sampler")
        declared = getattr(self.impl, "optimizers", None)
        note = ("" if not declared else
                f"; it declares optimizers {dict(declared) if isinstance(declared, dict) else declared}, but the "
                f"claims are about Algorithm 1, so every RoundTask asks for SGD clients and a plain-average server")
        return f"{self.name} ({how}; full-batch ProblemOracle clients{note})"

    def task(self, problem, config: FedConfig, layers, round_index: int) -> RoundTask:
        """The ``RoundTask`` the implementation is handed for one round.

        Parameters
        ----------
        problem : fslora_ref.problems.Problem
            The problem.
        config : fslora_ref.config.FedConfig
            Rank, budgets k_i, lr, H, scale and seed of the run.
        layers : list of (ndarray, ndarray)
            The global factors at the round's start, ``[(B_l: (m_l, r), A_l: (r, n_l))]``.
        round_index : int
            t (keys the round's random draws with ``config.seed``).

        Returns
        -------
        fslora_ref.conformance.protocol.RoundTask
            SGD clients, a plain-average server, the implementation's dtype; index sets only in white-box
            mode.

        Raises
        ------
        ValueError
            If the problem has minibatches or the configuration is not Algorithm 1 (SGD clients, every
            client, plain average).
        """
        _check_protocol_config(problem, config)
        dt = self.dtype
        index_sets = None
        if self.mode == "white":
            # copies: the implementation owns its task (the reference's draws may be shared, read-only)
            index_sets = [[S.indices.copy() for S in draw_round_sketches(config, round_index, i, problem.n_layers)]
                          for i in range(problem.n_clients)]
        return RoundTask(layers=[(np.array(B, dtype=dt), np.array(A, dtype=dt)) for B, A in layers],
                         base_weights=[np.array(W, dtype=dt) for W in problem.base_weights],
                         oracles=[ProblemOracle(problem, i) for i in range(problem.n_clients)],
                         budgets=tuple(config.budgets), rank=config.rank, lr=config.lr,
                         local_steps=config.local_steps, lora_scaling=config.lora_scaling,
                         weight_decay=config.weight_decay, index_sets=index_sets,
                         client_ids=tuple(range(problem.n_clients)), seed=config.seed, round_index=round_index,
                         label=f"verify round {round_index}")

    def run(self, problem, config: FedConfig, layers, round_index: int) -> list:
        """One round of the implementation from ``layers``.

        Parameters
        ----------
        problem : fslora_ref.problems.Problem
            The problem.
        config : fslora_ref.config.FedConfig
            Rank, budgets k_i, lr, H, scale and seed of the run.
        layers : list of (ndarray, ndarray)
            The global factors at the round's start, ``[(B_l: (m_l, r), A_l: (r, n_l))]``.
        round_index : int
            t (keys the round's random draws with ``config.seed``).

        Returns
        -------
        list of (ndarray, ndarray)
            The new global factors ``[(B_l: (m_l, r), A_l: (r, n_l))]``, float64.

        Raises
        ------
        ValueError
            If the returned layers are malformed (the message names the layer).
        fslora_ref.client.DivergenceError
            If they are non-finite.
        """
        task = self.task(problem, config, layers, round_index)
        method = getattr(self.impl, "black_box_round" if self.mode == "black" else "white_box_round")
        with np.errstate(over="ignore", invalid="ignore"):
            raw = method(task)
        return _returned_layers(raw, layers, self.name, round_index)


def _returned_layers(raw, layers, name: str, round_index: int) -> list:
    """[(B, A)] float64 from what a round returned (a RoundResult or the list itself): ValueError naming
    the layer if malformed, DivergenceError if non-finite."""
    got = list(getattr(raw, "layers", raw) or [])
    if len(got) != len(layers):
        raise ValueError(f"{name}: round {round_index} returned {len(got)} layers, expected {len(layers)}")
    out = []
    for l, (pair, (B0, A0)) in enumerate(zip(got, layers)):
        B, A = (np.asarray(x, dtype=float) for x in pair)
        if B.shape != np.shape(B0) or A.shape != np.shape(A0):
            raise ValueError(f"{name}: round {round_index}, layer {l} returned B {B.shape}, A {A.shape}; expected "
                             f"B {np.shape(B0)}, A {np.shape(A0)}")
        if not (np.all(np.isfinite(B)) and np.all(np.isfinite(A))):
            raise DivergenceError(f"round {round_index}: {name} returned non-finite factors; lower the step size")
        out.append((B, A))
    return out


def _check_protocol_config(problem, config: FedConfig):
    if problem.batch_size is not None:
        raise ValueError("a conformance-protocol implementation gets full-batch gradient oracles; "
                         f"the problem has batch_size={problem.batch_size} (use batch_size=None)")
    if config.client_optimizer != "sgd" or config.server_optimizer != "none" or config.client_fraction != 1.0:
        raise ValueError("a conformance-protocol round is Algorithm 1 (SGD clients, all N clients, plain average); "
                         f"got client_optimizer={config.client_optimizer!r}, server_optimizer="
                         f"{config.server_optimizer!r}, client_fraction={config.client_fraction}")


def _label(impl) -> str:
    return str(getattr(impl, "name", None) or type(impl).__name__)


def runner_for(obj) -> AlgorithmRunner | ProtocolRunner:
    """The round runner of ``obj``.

    Parameters
    ----------
    obj : object or None
        An existing runner (returned as is), an ``Algorithm`` (run through the reference's path), a
        conformance-protocol implementation, or None (the reference FSLoRA).

    Returns
    -------
    AlgorithmRunner or ProtocolRunner

    Raises
    ------
    TypeError
        If ``obj`` is none of these.
    """
    if obj is None:
        return AlgorithmRunner()
    if isinstance(obj, (AlgorithmRunner, ProtocolRunner)):
        return obj
    if isinstance(obj, Algorithm):
        return AlgorithmRunner(obj)
    return ProtocolRunner(obj)


def load_runner(target: str) -> AlgorithmRunner | ProtocolRunner:
    """The round runner of ``--impl MODULE:ATTR`` (the ``fslora crosscheck`` target syntax).

    Runners loaded from the same target share one cache of runs (``theory.experiment.run_seeds``) within
    the process; a protocol implementation is probed with one tiny round first.

    Parameters
    ----------
    target : str
        ``MODULE:ATTR`` or ``path/to/file.py:ATTR``.

    Returns
    -------
    AlgorithmRunner or ProtocolRunner

    Raises
    ------
    ValueError
        If the implementation cannot run verify's full-batch least-squares clients.
    """
    from fslora_ref.conformance.targets import load_target
    runner = runner_for(load_target(target))
    runner.name = f"{runner.name} ({target})" if target not in runner.name else runner.name
    runner.cache = _TARGET_CACHES.setdefault(target, {})
    if isinstance(runner, ProtocolRunner):
        _probe(runner, target)
    return runner


def _probe(runner: ProtocolRunner, target: str):
    """One tiny round on verify's kind of client, so that an implementation that cannot take full-batch
    ProblemOracle clients (e.g. one that only expresses the battery's quadratic oracles) is a one-line
    usage error up front, not a column of violated claims."""
    from fslora_ref.problems import least_squares
    problem = least_squares(n_clients=2, m=3, n=2, mean_size=6, seed=0)
    config = FedConfig(rank=2, budgets=(1, 2), local_steps=1, lr=0.01, rounds=1, seed=0)
    layers = [(np.full((3, 2), 0.1), np.full((2, 2), 0.1))]
    try:
        runner.run(problem, config, layers, 0)
    except (TypeError, NotImplementedError) as exc:
        raise ValueError(f"--impl {target} cannot run verify's full-batch least-squares clients "
                         f"(ProblemOracle): {exc}") from None


_TARGET_CACHES: dict = {}


def iterates(runner, problem, config: FedConfig, init_layers, rounds: int):
    """The theory's one round loop: each round one ``runner.run`` from the previous iterate.

    Parameters
    ----------
    runner : AlgorithmRunner or ProtocolRunner
        The implementation.
    problem : fslora_ref.problems.Problem
        The problem.
    config : fslora_ref.config.FedConfig
        The run's configuration.
    init_layers : list of (ndarray, ndarray)
        X^0, ``[(B: (m, r), A: (r, n))]``.
    rounds : int
        The number of rounds T.

    Yields
    ------
    t : int
        The round, 0 .. T - 1.
    layers : list of (ndarray, ndarray)
        X^{t+1}.

    Raises
    ------
    fslora_ref.client.DivergenceError
        Naming the round, if a round returns non-finite factors (the rounds yielded before stay valid).
    """
    layers = [(np.array(B, dtype=float), np.array(A, dtype=float)) for B, A in init_layers]
    for t in range(rounds):
        with np.errstate(over="ignore", invalid="ignore"):
            layers = runner.run(problem, config, layers, t)
        if not all(np.isfinite(B).all() and np.isfinite(A).all() for B, A in layers):
            raise DivergenceError(f"round {t}: non-finite global factors; lower the step size")
        yield t, layers


def trajectory(runner, problem, config: FedConfig, init_layers, rounds: int | None = None) -> list:
    """The iterates X^0, X^1, ..., X^T of one run from ``init_layers``.

    Parameters
    ----------
    runner : AlgorithmRunner or ProtocolRunner
        The implementation.
    problem : fslora_ref.problems.Problem
        The problem.
    config : fslora_ref.config.FedConfig
        The run's configuration.
    init_layers : list of (ndarray, ndarray)
        X^0, ``[(B: (m, r), A: (r, n))]``.
    rounds : int or None, optional
        T (None: ``config.rounds``).

    Returns
    -------
    list
        T + 1 points, each ``[(B, A)]`` per layer.

    Raises
    ------
    fslora_ref.client.DivergenceError
        Naming the round, if an iterate is non-finite.
    """
    rounds = config.rounds if rounds is None else rounds
    points = [[(np.array(B, dtype=float), np.array(A, dtype=float)) for B, A in init_layers]]
    points += [layers for _, layers in iterates(runner, problem, config, points[0], rounds)]
    return points


def stack(points) -> tuple[np.ndarray, np.ndarray]:
    """Single-layer points as stacked arrays.

    Parameters
    ----------
    points : list
        Points, each ``[(B: (m, r), A: (r, n))]``.

    Returns
    -------
    Bs : ndarray, shape (P, m, r)
    As : ndarray, shape (P, r, n)
    """
    return np.stack([p[0][0] for p in points]), np.stack([p[0][1] for p in points])
