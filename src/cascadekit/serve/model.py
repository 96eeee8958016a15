"""A served model's description: :class:`ServedModel` (a cascade, its name and its input).

Kept apart so that the YAML loader (:mod:`cascadekit.serve.config`) and the service
(:mod:`cascadekit.serve.service`) both use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cascade import Cascade
from ..oip import TensorSpec

__all__ = ["ServedModel"]


@dataclass
class ServedModel:
    """A cascade served under a name, with its single input tensor.

    Parameters
    ----------
    name : str
        Model name in the URLs (``/v2/models/{name}``).
    cascade : Cascade
        Its stages need live models (``Stage(model=...)``) and thresholds.
    input : TensorSpec
        The input tensor (shape with -1 for the batch dimension).
    preprocess : callable, optional
        Applied to the decoded input array before the first stage (e.g. a dtype cast).
    version : str, default="1"
    class_names : list of str, optional
        Shown in the metadata.
    warmup_input : callable, optional
        ``warmup_input(n)`` returns n valid inputs for the start-up warm-up; defaults to zeros.
    """

    name: str
    cascade: Cascade
    input: TensorSpec
    preprocess: Callable[[Any], Any] | None = None
    version: str = "1"
    class_names: list[str] | None = None
    warmup_input: Callable[[int], Any] | None = None
