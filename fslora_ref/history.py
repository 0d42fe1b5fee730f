"""Per-round records of one federated run (row t: the server state after t rounds)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HISTORY_KEYS = ("loss", "sketched_loss", "grad_norm_factors", "grad_norm_weights", "upload_floats",
                "download_floats", "broadcast_floats", "client_memory_floats")


@dataclass
class History:
    """Per-round records of one run; lists indexed by round (0 = before training).

    ``history["loss"]`` is ``history.rows["loss"]``.

    Parameters
    ----------
    algorithm : str
        The algorithm's name.
    config : dict
        The run's configuration (``FedConfig.to_json()``).
    rows : dict of str to list, optional
        One list per key of ``HISTORY_KEYS`` (default: empty lists); entry t describes the server
        state after t rounds, None where a value was not recorded.
    per_client_upload : list of list, optional
        ``[round][client]``: the floats each client uploaded in that round.
    peak_client_memory : list, optional
        Per client, the largest trainable state (floats) over the rounds.
    final_state : ServerState or None, optional
        The server state after the last round (None until the run ends).
    """

    algorithm: str
    config: dict
    rows: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    per_client_upload: list = field(default_factory=list)   # [round][client] floats this round
    peak_client_memory: list = field(default_factory=list)  # per client, max over rounds (floats)
    final_state: object = None                              # the ServerState after the last round

    def append(self, row: dict):
        """Add one round's row.

        Parameters
        ----------
        row : dict
            Values by ``HISTORY_KEYS`` key; a missing key is recorded as None.
        """
        for k in HISTORY_KEYS:
            self.rows[k].append(row.get(k))

    def __getitem__(self, key):
        return self.rows[key]

    @property
    def n_rounds(self) -> int:
        """The number of rounds recorded (rows minus the initial one)."""
        return len(self.rows["loss"]) - 1

    def to_json(self) -> dict:
        """The rows as JSON-ready lists.

        Returns
        -------
        dict
            Every key of ``rows`` (values as int, float or None) plus ``"per_client_upload"`` and
            ``"peak_client_memory"``.
        """
        out = {k: [None if v is None else (int(v) if isinstance(v, (int, np.integer)) else float(v)) for v in vals]
               for k, vals in self.rows.items()}
        out["per_client_upload"] = self.per_client_upload
        out["peak_client_memory"] = self.peak_client_memory
        return out
