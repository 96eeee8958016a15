"""What the server answers: :class:`Reply` (status, body, headers), :class:`InferResult` (one
request's outputs), the served outputs, and the helpers that keep error answers and logs tidy
(:func:`new_error_id`, :class:`LogLimiter`, :func:`format_thresholds`).

Examples
--------
>>> Reply.json({"ok": True}).status, Reply.json({"ok": True}).body
(200, b'{"ok": true}')
>>> [o.name for o in OUTPUTS][:4] == list(DEFAULT_OUTPUTS)
True
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..oip import BadRequestError, OverloadedError, ProtocolError, TensorSpec, encode_error

__all__ = [
    "DEFAULT_OUTPUTS",
    "JSON_CONTENT_TYPE",
    "OUTPUTS",
    "InferResult",
    "LogLimiter",
    "Reply",
    "format_thresholds",
    "new_error_id",
]


class LogLimiter:
    """At most ``burst`` log lines per ``period`` seconds per key; the rest are counted and the
    count is reported with the next line that gets through.

    Examples
    --------
    >>> lim = LogLimiter(burst=2, period=60.0)
    >>> [lim.allow("k", now=0.0) for _ in range(3)]
    [0, 0, None]
    >>> lim.allow("k", now=61.0)  # a new period: the one suppressed line is reported
    1
    """

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        self.burst = burst
        self.period = period
        self._state: dict[str, list[float]] = {}

    def allow(self, key: str, now: float | None = None) -> int | None:
        """None to drop this line; else the number of lines dropped since the last one."""
        t = time.monotonic() if now is None else now
        start, used, dropped = self._state.get(key, [t, 0.0, 0.0])
        if t - start >= self.period:
            start, used = t, 0.0
        if used >= self.burst:
            self._state[key] = [start, used, dropped + 1]
            return None
        self._state[key] = [start, used + 1, 0.0]
        return int(dropped)


def new_error_id() -> str:
    """A short random id that ties a client's error answer to the server's log line."""
    return uuid.uuid4().hex[:12]


#: Outputs of every served cascade, in response order.
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("label", ("INT64",), (-1,)),
    TensorSpec("score", ("FP32",), (-1,)),
    TensorSpec("stage", ("INT32",), (-1,)),
    TensorSpec("fallback", ("BOOL",), (-1,)),
    TensorSpec("probabilities", ("FP32",), (-1, -1)),
    TensorSpec("stage_scores", ("FP64",), (-1, -1)),
)
#: The outputs a request gets when it names none.
DEFAULT_OUTPUTS = ("label", "score", "stage", "fallback")
#: The content type of JSON answers.
JSON_CONTENT_TYPE = "application/json"


@dataclass
class InferResult:
    """Per-input outputs of one request, and the thresholds that were applied.

    ``score`` is the first stage's routing score; ``stage_scores`` (n, N-1) every non-final
    stage's (NaN where the stage did not run), as in :class:`~cascadekit.RouteResult`.
    """

    label: NDArray[np.int64]
    score: NDArray[np.float32]
    stage: NDArray[np.int32]
    fallback: NDArray[np.bool_]
    thresholds: tuple[float, ...]
    probabilities: NDArray[np.float32] | None = None
    stage_scores: NDArray[np.floating[Any]] | None = None

    def output(self, name: str) -> NDArray[Any]:
        """The output array called ``name``."""
        value = getattr(self, name)
        if value is None:  # pragma: no cover - guarded by the caller
            raise BadRequestError(f"Output {name!r} was not computed.")
        out: NDArray[Any] = value
        return out


@dataclass
class Reply:
    """An HTTP answer: status, body and headers (content type included)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, doc: Any, status: int = 200) -> Reply:
        """A JSON reply."""
        return cls(status, json.dumps(doc).encode(), {"content-type": JSON_CONTENT_TYPE})

    @classmethod
    def error(cls, exc: ProtocolError, retry_after: float | None = None) -> Reply:
        """``{"error": message}`` with the error's status (and ``Retry-After`` for 503)."""
        headers = {"content-type": JSON_CONTENT_TYPE}
        if isinstance(exc, OverloadedError):
            after = exc.retry_after if retry_after is None else retry_after
            headers["retry-after"] = str(max(1, math.ceil(after)))
        return cls(exc.status, encode_error(str(exc)), headers)


def format_thresholds(ths: Sequence[float]) -> float | str:
    """A scalar protocol parameter holding thresholds (a number, or a comma-separated string).

    Examples
    --------
    >>> format_thresholds([0.5]), format_thresholds([1.0, -math.inf])
    (0.5, '1.0,-inf')
    """
    if len(ths) == 1 and math.isfinite(ths[0]):
        return float(ths[0])
    return ",".join(repr(float(t)) for t in ths)
