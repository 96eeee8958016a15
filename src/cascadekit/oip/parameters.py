"""Request parameters of a cascade: ``parameters.threshold`` and ``parameters.timeout``."""

from __future__ import annotations

import math
from typing import Any

from .errors import BadRequestError
from .tensors import preview

__all__ = ["parse_threshold_parameter", "parse_timeout_parameter"]


def parse_threshold_parameter(value: Any, n_thresholds: int) -> tuple[float, ...] | None:
    """Decode ``parameters.threshold``: a number, or a comma-separated string for N > 2 stages.

    ``"inf"``/``"-inf"`` are accepted in strings. Returns None when ``value`` is None.

    Examples
    --------
    >>> parse_threshold_parameter(0.5, 1), parse_threshold_parameter("1.0, -inf", 2)
    ((0.5,), (1.0, -inf))
    """
    if value is None:
        return None
    if isinstance(value, bool):
        vals: list[Any] = [value]
    elif isinstance(value, (int, float)):
        vals = [float(value)]
    elif isinstance(value, str):
        vals = [v.strip() for v in value.split(",")]
    else:
        vals = [value]
    out: list[float] = []
    for v in vals:
        try:
            if isinstance(v, bool):
                raise ValueError
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            f = math.nan
        if math.isnan(f):
            raise BadRequestError(
                f"Expected parameters.threshold to be a number (or, for {n_thresholds + 1} "
                f'stages, {n_thresholds} comma-separated numbers such as "1.5,0.8"); got '
                f"{preview(value)}."
            )
        out.append(f)
    if len(out) != n_thresholds:
        raise BadRequestError(
            f"Expected {n_thresholds} threshold(s) in parameters.threshold for a "
            f"{n_thresholds + 1}-stage cascade; got {len(out)} ({preview(value)}). Separate "
            "them with commas."
        )
    return tuple(out)


def parse_timeout_parameter(value: Any) -> float | None:
    """Decode ``parameters.timeout`` (microseconds, as tritonclient sends it) into seconds.

    Examples
    --------
    >>> parse_timeout_parameter(250000), parse_timeout_parameter(None)
    (0.25, None)
    """
    if value is None:
        return None
    if isinstance(value, int) and value > 2**62:
        return None  # far beyond any deadline: none
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadRequestError(
            f"Expected parameters.timeout to be a positive number of microseconds (e.g. "
            f"1000000 for one second); got {preview(value)}."
        )
    if not math.isfinite(value):
        return None
    return float(value) / 1e6
