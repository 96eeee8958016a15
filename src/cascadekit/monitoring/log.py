"""A rotating local log (JSON Lines) of what recalibration needs.

Two kinds of record, one JSON object per line:

* ``{"kind": "route", "model", "time", "threshold", "score": [...], "stage": [...]}``: one per
  request (or batch), the student's score and the answering stage of every input;
* ``{"kind": "audit", "model", "time", "threshold", "score", "student", "teacher", "shadow"}``:
  one per input of the audit sample, with the student's and the teacher's answers (``shadow``
  is true when the teacher ran only for the audit).

Raw inputs are written only when asked (``log_inputs=True``: an ``"inputs"`` list on route
records). Thresholds use the router-file encoding (``null`` = +inf, ``"-inf"``). When the file
would exceed ``max_bytes`` it is renamed ``PATH.1`` (older files shift to ``PATH.2`` ...; at
most ``backups`` are kept) and a new file is started; :func:`read_log` reads them all, oldest
first.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "monitor.jsonl")
>>> log = MonitorLog(path)
>>> log.route("m", 0.5, [1.2, 0.1], [0, 1])
>>> log.audit("m", 0.5, 0.1, student=3, teacher=3, shadow=False)
>>> log.close()
>>> [r["kind"] for r in read_log(path)]
['route', 'audit']
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike

from .._validation import encode_threshold
from ..errors import MonitorLogError, ParameterError

__all__ = ["MonitorLog", "audit_sample", "read_log"]


def _enc(t: float | Sequence[float]) -> Any:
    if isinstance(t, int | float | np.floating | np.integer):
        return encode_threshold(float(t))
    return [encode_threshold(float(v)) for v in t]


class MonitorLog:
    """Append routing and audit records to a rotating JSONL file.

    Parameters
    ----------
    path : str or path-like
        The log file; its directory is created if needed.
    max_bytes : int, default=50_000_000
        Rotate before the file would grow past this size.
    backups : int, default=5
        Rotated files kept (``PATH.1`` newest ... ``PATH.<backups>`` oldest).
    log_inputs : bool, default=False
        Also write the raw inputs of every request (they may be personal data: off by default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 50_000_000,
        backups: int = 5,
        log_inputs: bool = False,
    ) -> None:
        if int(max_bytes) != max_bytes or max_bytes < 1024:
            raise ParameterError(f"Expected max_bytes >= 1024; got {max_bytes!r}.")
        if int(backups) != backups or backups < 1:
            raise ParameterError(f"Expected backups >= 1; got {backups!r}.")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.backups = int(backups)
        self.log_inputs = bool(log_inputs)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise MonitorLogError(
                f"Cannot open the monitoring log {str(self.path)!r} for appending: {exc}. "
                "Choose a writable path."
            ) from exc
        self._size = self.path.stat().st_size

    def _write(self, doc: dict[str, Any]) -> None:
        if self._file is None:
            raise MonitorLogError(f"The monitoring log {str(self.path)!r} is closed.")
        line = json.dumps(doc, separators=(",", ":")) + "\n"
        n = len(line.encode())
        if self._size and self._size + n > self.max_bytes:
            self._rotate()
        assert self._file is not None
        self._file.write(line)
        self._file.flush()
        self._size += n

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        for k in range(self.backups - 1, 0, -1):
            src = Path(f"{self.path}.{k}")
            if src.exists():
                os.replace(src, f"{self.path}.{k + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._file = open(self.path, "a", encoding="utf-8")
        self._size = 0

    def route(
        self,
        model: str,
        threshold: float | Sequence[float],
        scores: ArrayLike,
        stage: ArrayLike,
        inputs: ArrayLike | None = None,
    ) -> None:
        """Log one request's inputs: the student's scores and the stages that answered."""
        doc: dict[str, Any] = {
            "kind": "route",
            "model": model,
            "time": round(time.time(), 3),
            "threshold": _enc(threshold),
            "score": [float(v) for v in np.asarray(scores, dtype=np.float64).ravel()],
            "stage": [int(v) for v in np.asarray(stage).ravel()],
        }
        if self.log_inputs and inputs is not None:
            doc["inputs"] = np.asarray(inputs).tolist()
        self._write(doc)

    def audit(
        self,
        model: str,
        threshold: float | Sequence[float],
        score: float,
        *,
        student: int,
        teacher: int,
        shadow: bool,
    ) -> None:
        """Log one audit-sample input with both answers."""
        self._write(
            {
                "kind": "audit",
                "model": model,
                "time": round(time.time(), 3),
                "threshold": _enc(threshold),
                "score": float(score),
                "student": int(student),
                "teacher": int(teacher),
                "shadow": bool(shadow),
            }
        )

    def close(self) -> None:
        """Close the file (later writes raise MonitorLogError)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: str | os.PathLike[str], model: str | None = None) -> Iterator[dict[str, Any]]:
    """Records of a monitoring log and its rotated files, oldest first.

    A last line cut short (the server stopped mid-write) is skipped; any other malformed line
    raises :class:`~cascadekit.errors.MonitorLogError` naming the file and line.

    Parameters
    ----------
    path : str or path-like
    model : str, optional
        Only this model's records.
    """
    p = Path(path)
    if not p.exists():
        raise MonitorLogError(
            f"Expected a monitoring log at {str(p)!r}; there is no such file. Point to the "
            "file set as monitoring.log in the server configuration."
        )
    rotated = sorted(
        (q for q in p.parent.glob(p.name + ".*") if q.suffix[1:].isdigit()),
        key=lambda q: -int(q.suffix[1:]),
    )
    for f in [*rotated, p]:
        lines = f.read_text(encoding="utf-8").split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                if i == len(lines) - 1:  # no newline after it: an interrupted write
                    continue
                raise MonitorLogError(
                    f"Line {i + 1} of {str(f)!r} is not JSON ({exc.msg}); expected one record "
                    "per line as the server writes them."
                ) from exc
            if not isinstance(doc, dict) or doc.get("kind") not in ("route", "audit"):
                raise MonitorLogError(
                    f"Line {i + 1} of {str(f)!r} is not a monitoring record; expected an object "
                    f'with "kind": "route" or "audit".'
                )
            if model is None or doc.get("model") == model:
                yield doc


def audit_sample(
    records: Sequence[dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The audit sample and the routed scores of a log's records.

    Returns
    -------
    scores, student, teacher : ndarray
        One entry per audit record.
    route_scores : ndarray
        Every routed input's student score.

    Raises
    ------
    MonitorLogError
        If an audit record lacks a field.
    """
    s: list[float] = []
    ps: list[int] = []
    pt: list[int] = []
    route: list[float] = []
    for r in records:
        if r["kind"] == "route":
            route.extend(float(v) for v in r.get("score", []))
            continue
        try:
            s.append(float(r["score"]))
            ps.append(int(r["student"]))
            pt.append(int(r["teacher"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorLogError(
                f"An audit record lacks a valid {exc} field; expected score, student and teacher."
            ) from exc
    return (
        np.asarray(s, dtype=np.float64),
        np.asarray(ps, dtype=np.int64),
        np.asarray(pt, dtype=np.int64),
        np.asarray([v for v in route if math.isfinite(v)], dtype=np.float64),
    )
