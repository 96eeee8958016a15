"""A served model's description: :class:`ServedModel` (a cascade, its name and its input).

Kept apart so that the YAML loader (:mod:`cascadekit.serve.config`) and the service
(:mod:`cascadekit.serve.service`) both use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cascade import Cascade
from ..oip import TensorSpec, utf8_texts

__all__ = ["ServedModel", "text_input"]


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


def text_input(
    spec: TensorSpec, max_bytes: int | None = None
) -> tuple[Callable[[Any], Any], Callable[[int], Any]]:
    """The ``preprocess`` and ``warmup_input`` of a model whose input is a batch of texts.

    The input is a BYTES tensor of shape ``[n]`` or ``[n, 1]`` (``spec``); ``preprocess``
    decodes it to an array of ``n`` str (UTF-8), refusing an element that is not UTF-8 or is
    longer than ``max_bytes`` with a :class:`~cascadekit.oip.BadRequestError` (400).

    Examples
    --------
    >>> from cascadekit.oip import TensorSpec
    >>> prep, warm = text_input(TensorSpec("text", ("BYTES",), (-1,)), max_bytes=8)
    >>> prep(np.array([b"good", b"bad"], dtype=object))
    array(['good', 'bad'], dtype=object)
    >>> prep(warm(2)).shape
    (2,)
    >>> prep(np.array([b"much too long"], dtype=object))
    Traceback (most recent call last):
    ...
    cascadekit.oip.errors.BadRequestError: Input 'text' takes texts of at most 8 bytes ...
    """
    name = spec.name
    tail = tuple(1 for _ in spec.shape[1:])

    def preprocess(data: Any) -> Any:
        return utf8_texts(name, np.asarray(data, dtype=object), max_bytes)

    def warmup_input(n: int) -> Any:
        return np.full((n, *tail), b"hello", dtype=object)

    return preprocess, warmup_input
