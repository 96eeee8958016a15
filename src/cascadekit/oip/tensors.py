"""Tensors of the protocol: datatypes, tensor specs, request and output tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import BadRequestError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_RANK",
    "InferRequest",
    "InputTensor",
    "OutputTensor",
    "RequestedOutput",
    "TensorSpec",
    "check_finite",
    "datatype_of",
]


#: Header naming the length of the JSON part of a binary-extension body.
HEADER_LENGTH = "Inference-Header-Content-Length"


#: Protocol datatype -> numpy dtype (BYTES: object arrays of ``bytes``).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}


#: Largest number of dimensions of a tensor (numpy's own limit is 64).
MAX_RANK = 32


LITTLE_ENDIAN = {k: v.newbyteorder("<") for k, v in DATATYPES.items() if k not in ("BOOL", "BYTES")}


@dataclass(frozen=True)
class TensorSpec:
    """Metadata of one model input or output: name, accepted datatypes and shape.

    Parameters
    ----------
    name : str
    datatypes : tuple of str
        Accepted protocol datatypes; the first is the one advertised in the metadata.
    shape : tuple of int
        ``-1`` for any size (the batch dimension is the first).
    value_range : tuple of float, optional
        Inclusive ``(low, high)`` bounds every element must respect (inputs only).

    Examples
    --------
    >>> TensorSpec("image", ("UINT8", "FP32"), (-1, 28, 28)).to_metadata()
    {'name': 'image', 'datatype': 'UINT8', 'shape': [-1, 28, 28]}
    """

    name: str
    datatypes: tuple[str, ...]
    shape: tuple[int, ...]
    value_range: tuple[float, float] | None = None

    def to_metadata(self) -> dict[str, Any]:
        """The protocol's ``$metadata_tensor`` object."""
        return {"name": self.name, "datatype": self.datatypes[0], "shape": list(self.shape)}

    def check_header(self, datatype: str, shape: Sequence[int]) -> None:
        """Raise :class:`BadRequestError` unless the declared datatype and shape match.

        Cheap (the rank is compared first), so it runs before any data is decoded.
        """
        if datatype not in self.datatypes:
            raise BadRequestError(
                f"Input {self.name!r} expects datatype {' or '.join(self.datatypes)}; got "
                f"{datatype}. Send the tensor as {self.datatypes[0]}."
            )
        ok = len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )
        if not ok:
            raise BadRequestError(
                f"Input {self.name!r} expects shape {list(self.shape)} (-1 = any size); got "
                f"{preview(list(shape))}. Reshape the tensor, e.g. a single input as "
                f"[1, {', '.join(str(d) for d in self.shape[1:])}]."
            )

    def check(self, tensor: InputTensor) -> None:
        """Raise :class:`BadRequestError` unless ``tensor`` matches this spec.

        Non-finite floats (NaN, inf) are always refused; ``value_range`` bounds the rest.
        """
        self.check_header(tensor.datatype, tensor.shape)
        check_finite(self.name, tensor.data)
        if self.value_range is not None and tensor.data.size:
            lo, hi = self.value_range
            data = tensor.data
            if data.dtype.kind in "ui":
                info = np.iinfo(data.dtype)
                if lo <= info.min and info.max <= hi:  # e.g. UINT8 in [0, 255]: nothing to check
                    return
            dmin, dmax = data.min(), data.max()
            if dmin < lo or dmax > hi:
                raise BadRequestError(
                    f"Input {self.name!r} expects values in [{lo:g}, {hi:g}]; got values in "
                    f"[{float(dmin):g}, {float(dmax):g}]. Send raw values, not normalised "
                    "or scaled ones."
                )


def check_finite(name: str, data: Any) -> None:
    """Raise :class:`BadRequestError` when a floating-point input holds NaN or infinity.

    Examples
    --------
    >>> check_finite("x", np.array([1.0, np.nan]))
    Traceback (most recent call last):
    ...
    cascadekit.oip.errors.BadRequestError: Input 'x' holds 1 non-finite value(s) ...
    """
    arr = np.asarray(data)
    if arr.dtype.kind in "fc" and arr.size and not np.isfinite(arr).all():
        raise BadRequestError(
            f"Input {name!r} holds {int((~np.isfinite(arr)).sum())} non-finite value(s) (NaN "
            "or inf); expected finite numbers. Clean or impute the inputs before sending them."
        )


def preview(value: Any, limit: int = 8) -> str:
    """A short description of a client's value (never the whole of a huge list or number)."""
    if isinstance(value, list):
        head = ", ".join(preview(v, limit) for v in value[:limit])
        more = f", ... ({len(value)} items)" if len(value) > limit else ""
        return f"[{head}{more}]"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class InputTensor:
    """A decoded input tensor: ``data`` already has ``shape`` and the dtype of ``datatype``."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    data: NDArray[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    """An entry of the request's ``outputs``: which output, and whether as binary data."""

    name: str
    binary_data: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    """A decoded inference request."""

    inputs: list[InputTensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None

    @property
    def binary_data_output(self) -> bool:
        """Request-level ``parameters.binary_data_output`` (tritonclient's default)."""
        return self.parameters.get("binary_data_output") is True

    def input(self, name: str) -> InputTensor | None:
        """The input named ``name``, or None."""
        for t in self.inputs:
            if t.name == name:
                return t
        return None


@dataclass
class OutputTensor:
    """An output to encode: the datatype is derived from ``data``'s dtype unless given."""

    name: str
    data: NDArray[Any]
    datatype: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def datatype_of(dtype: Any) -> str:
    """The protocol datatype of a numpy dtype.

    Examples
    --------
    >>> datatype_of(np.float32), datatype_of(np.bool_)
    ('FP32', 'BOOL')
    """
    dt = np.dtype(dtype)
    for name, d in DATATYPES.items():
        if d == dt:
            return name
    if dt.kind in "SU":
        return "BYTES"
    raise BadRequestError(f"No Open Inference Protocol datatype for numpy dtype {dt}.")
