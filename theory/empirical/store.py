"""Finished runs kept on disk as JSON, so an interrupted ``fslora claims`` loses nothing.

``runs.json`` maps a key (e.g. ``least_squares/seed3/<arm>``) to the fingerprint of what was
run (settings, arm, algorithm class) and the run's record. ``get`` returns a unit only when its stored
fingerprint equals the requested one, so a changed setting is recomputed, never mixed in.
The file is data (strict JSON, written atomically after every unit), never code.
"""
from __future__ import annotations

import json
import os

from fslora_ref.outputs import write_json
from fslora_ref.safe_json import read_json_file

STORE_VERSION = 1
MAX_STORE_BYTES = 1 << 30
MAX_STORE_DEPTH = 32


def canonical(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so fingerprints compare equal.

    Parameters
    ----------
    obj : object
        A JSON-serialisable value.

    Returns
    -------
    object

    Examples
    --------
    >>> from theory.empirical.store import canonical
    >>> canonical({"dims": (("m", 48),)})
    {'dims': [['m', 48]]}
    """
    return json.loads(json.dumps(obj))


class RunStore:
    """Finished runs kept in a JSON file (``runs.json``), keyed by unit and checked by fingerprint.

    Parameters
    ----------
    path : str or os.PathLike
        The runs file.
    resume : bool
        Load the file's units if it exists (else start empty; the file is overwritten on the first
        ``put``).

    Raises
    ------
    ValueError
        If ``resume`` and the file cannot be read or is not a runs file of ``STORE_VERSION``.
    """
    def __init__(self, path, resume: bool):
        self.path = os.fspath(path)
        self.units = {}
        if resume and os.path.exists(self.path):
            self.units = self._load()

    def _load(self) -> dict:
        try:  # a regular file, bounded in size and JSON nesting (runs.json is a few MB, 6 levels deep)
            data = read_json_file(self.path, "runs file", max_bytes=MAX_STORE_BYTES, max_depth=MAX_STORE_DEPTH)
        except OSError as exc:
            raise ValueError(f"--resume: cannot read {self.path} ({exc.strerror}); delete it to start afresh") from None
        except ValueError as exc:
            raise ValueError(f"--resume: cannot read {self.path} ({exc}); delete it to start afresh") from None
        if not isinstance(data, dict) or data.get("version") != STORE_VERSION or not isinstance(data.get("units"), dict):
            raise ValueError(f"--resume: {self.path} is not a runs file of version {STORE_VERSION}; delete it to start afresh")
        return data["units"]

    def get(self, key: str, fingerprint: dict):
        """The stored record of ``key`` if it was run with exactly ``fingerprint``.

        Parameters
        ----------
        key : str
            The unit's key (e.g. ``least_squares/seed3/<arm>``).
        fingerprint : dict
            What the unit is (settings, arm, algorithm class).

        Returns
        -------
        object or None
            The record, or None if absent or run with another fingerprint.
        """
        unit = self.units.get(key)
        if isinstance(unit, dict) and unit.get("fingerprint") == canonical(fingerprint):
            return unit.get("runs")
        return None

    def put(self, items) -> None:
        """Store units and rewrite the file once (atomically).

        Parameters
        ----------
        items : iterable of tuple
            ``[(key, fingerprint, record)]``.
        """
        for key, fingerprint, record in items:
            self.units[key] = {"fingerprint": canonical(fingerprint), "runs": record}
        write_json(self.path, {"version": STORE_VERSION, "units": self.units}, indent=None)

    def __len__(self) -> int:
        return len(self.units)
