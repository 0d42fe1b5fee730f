"""What a claim checker returns: a status, the evidence numbers and the one number to print."""
from __future__ import annotations

from dataclasses import dataclass, field

VERIFIED, VIOLATED, OUTSIDE, SKIPPED = "verified", "violated", "outside_conditions", "skipped"
# A claim that no implementation can fail says so instead of "verified": IDENTITY when it holds by
# construction of the check (only a coding error of the toolkit fails it), MEASUREMENT when it reports
# numbers without a pass/fail rule. INCONCLUSIVE: nothing is shown violated, but not every cell that
# ran is shown to hold either (so the claim is not "verified").
IDENTITY, MEASUREMENT, INCONCLUSIVE = "identity", "measurement", "inconclusive"
STATUSES = (VERIFIED, VIOLATED, OUTSIDE, SKIPPED, IDENTITY, MEASUREMENT, INCONCLUSIVE)

# Identities that hold exactly are compared at this relative tolerance (float64 rounding over
# sums of at most MAX_SUBSETS terms).
EXACT_RTOL = 1e-9


@dataclass
class Result:
    """What a claim checker returns: a status, the evidence and the one number to print.

    Parameters
    ----------
    status : str
        One of ``STATUSES``: verified, violated, outside_conditions, skipped, identity, measurement,
        inconclusive.
    key : str
        The number shown in the verify table, as text.
    evidence : dict, optional
        The numbers behind the status (written to report.json).

    Raises
    ------
    ValueError
        If ``status`` is not one of ``STATUSES``.
    """
    status: str
    key: str                                     # the number shown in the table, as text
    evidence: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def exact(errors: dict, scale: float = 1.0, what: str = "max abs error") -> Result:
    """The Result of an exact identity: VERIFIED if every error is within ``EXACT_RTOL * max(scale, 1)``.

    Parameters
    ----------
    errors : dict
        ``{case name: absolute error}`` (at least one entry).
    scale : float, optional
        The size of the compared quantities (the tolerance is relative to it).
    what : str, optional
        What the key's number is.

    Returns
    -------
    Result
        Its evidence names the worst entry and holds every error and the tolerance.

    Examples
    --------
    >>> from theory.result import exact
    >>> exact({"a": 1e-12, "b": 3e-10}).status
    'verified'
    >>> res = exact({"a": 1e-12, "b": 3e-6})
    >>> res.status, res.key, res.evidence["worst"]
    ('violated', 'max abs error 3.00e-06', 'b')
    """
    worst_name = max(errors, key=lambda k: errors[k])
    worst = float(errors[worst_name])
    tol = EXACT_RTOL * max(scale, 1.0)
    status = VERIFIED if worst <= tol else VIOLATED
    return Result(status, f"{what} {worst:.2e}", {"errors": {k: float(v) for k, v in errors.items()},
                                                   "worst": worst_name, "max_error": worst, "tolerance": tol})


def as_identity(result: Result, why: str) -> Result:
    """Mark the result of a check that no implementation can fail.

    VERIFIED becomes IDENTITY (with ``why`` in the evidence); VIOLATED (a coding error of the toolkit)
    stays VIOLATED.

    Parameters
    ----------
    result : Result
        The check's result (modified in place).
    why : str
        Why no implementation can fail it.

    Returns
    -------
    Result
        ``result``.
    """
    if result.status == VERIFIED:
        result.status = IDENTITY
    result.evidence = dict(result.evidence, cannot_fail_because=why)
    return result
