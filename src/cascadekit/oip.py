"""The Open Inference Protocol (KServe v2) over HTTP/JSON: a pure codec, no web framework.

One codec for both ends: the server (:mod:`cascadekit.serve`) decodes requests and encodes
responses with it, and :class:`~cascadekit.adapters.RemoteModel` encodes requests
(:func:`encode_infer_request`) and decodes responses (:func:`decode_tensor`) with it.

This module turns request bodies into numpy tensors and results into response bodies, following
the protocol's field names (``inputs``/``outputs`` with ``name``, ``shape``, ``datatype``,
``data``; ``parameters``; ``{"error": "..."}`` on errors) and Triton's *binary tensor data
extension*: when the ``Inference-Header-Content-Length`` header is present, the body is a JSON
header of that many bytes followed by raw tensor bytes; an input carries
``parameters.binary_data_size``, and an output is sent as raw bytes when the request asks for it
(``outputs[i].parameters.binary_data`` or the request-level ``parameters.binary_data_output``).

It imports numpy only, so any HTTP front end (the FastAPI app of :mod:`cascadekit.serve.app`,
a Ray Serve ingress, a client, a test) can reuse it. Errors are :class:`ProtocolError`
subclasses carrying the HTTP status to answer with.

Examples
--------
>>> import json, numpy as np
>>> body = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
...                                "data": [1, 2, 3, 4]}]}).encode()
>>> req = parse_infer_request(body)
>>> req.inputs[0].data
array([[1., 2.],
       [3., 4.]], dtype=float32)
>>> payload, header_len = encode_infer_response(
...     "m", [OutputTensor("label", np.array([1, 0]))], request_id="7")
>>> json.loads(payload)["outputs"][0]
{'name': 'label', 'shape': [2], 'datatype': 'INT64', 'data': [1, 0]}
>>> header_len is None
True
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import CascadeError

_orjson: Any
try:  # a faster parser (the serve extra installs it); the standard library otherwise
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_RANK",
    "BadRequestError",
    "DeadlineExceededError",
    "InferRequest",
    "InputRejectedError",
    "InputTensor",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "OutputTensor",
    "OverloadedError",
    "ProtocolError",
    "RequestedOutput",
    "TensorSpec",
    "check_finite",
    "datatype_of",
    "decode_tensor",
    "encode_error",
    "encode_infer_request",
    "encode_infer_response",
    "loads_json",
    "model_metadata",
    "parse_infer_request",
    "parse_threshold_parameter",
    "parse_timeout_parameter",
    "server_metadata",
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
_LITTLE = {k: v.newbyteorder("<") for k, v in DATATYPES.items() if k not in ("BOOL", "BYTES")}


# --------------------------------------------------------------------------------------- errors


class ProtocolError(CascadeError):
    """A request the server answers with an error; ``status`` is the HTTP status code."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequestError(ProtocolError):
    """Malformed or invalid request (HTTP 400)."""

    status = 400


class InputRejectedError(ProtocolError):
    """The model could not process this request's inputs, though it serves others (HTTP 422)."""

    status = 422


class ModelNotFoundError(ProtocolError):
    """No model of that name (or version) is served (HTTP 404)."""

    status = 404


class OverloadedError(ProtocolError):
    """A queue is full or the server is draining (HTTP 503, with ``Retry-After``)."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelNotReadyError(OverloadedError):
    """The model is not loaded, not warmed up, or its first stage is failing (HTTP 503)."""


class DeadlineExceededError(ProtocolError):
    """The request's deadline passed before its first stage answered (HTTP 504)."""

    status = 504


# ---------------------------------------------------------------------------------- data types


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
                f"{_preview(list(shape))}. Reshape the tensor, e.g. a single input as "
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
    cascadekit.oip.BadRequestError: Input 'x' holds 1 non-finite value(s) ...
    """
    arr = np.asarray(data)
    if arr.dtype.kind in "fc" and arr.size and not np.isfinite(arr).all():
        raise BadRequestError(
            f"Input {name!r} holds {int((~np.isfinite(arr)).sum())} non-finite value(s) (NaN "
            "or inf); expected finite numbers. Clean or impute the inputs before sending them."
        )


def _preview(value: Any, limit: int = 8) -> str:
    """A short description of a client's value (never the whole of a huge list or number)."""
    if isinstance(value, list):
        head = ", ".join(_preview(v, limit) for v in value[:limit])
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


# ------------------------------------------------------------------------------------ decoding


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else "null" if v is None else "?"
    )


def _reject_constant(name: str) -> Any:
    raise BadRequestError(
        f"The request body contains {name}, which is not valid JSON. Send finite numbers only."
    )


def _malformed(what: str, line: int, col: int, msg: str) -> BadRequestError:
    return BadRequestError(
        f"Expected the {what} to be JSON; it is malformed at line {line} column {col}: {msg}. "
        'Send a JSON object such as {"inputs": [{"name": ..., "shape": [...], "datatype": ..., '
        '"data": [...]}]}.'
    )


def loads_json(raw: bytes, what: str = "request body") -> Any:
    """Parse a client's JSON, with every failure a :class:`BadRequestError`.

    NaN and infinity are refused (they are not JSON), as are numbers beyond 64-bit integers or
    doubles and nesting deeper than the parser allows. Uses orjson when it is installed.

    Examples
    --------
    >>> loads_json(b'{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
    >>> loads_json(b"[" + b"9" * 5000 + b"]")
    Traceback (most recent call last):
    ...
    cascadekit.oip.BadRequestError: The request body holds a number too large ...
    """
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError as exc:
            pos = exc.pos if isinstance(exc.pos, int) else 0
            nxt = bytes(raw[pos : pos + 9]).lstrip(b"-")
            if nxt.startswith((b"NaN", b"Infinity")):
                _reject_constant(nxt[:3].decode() if nxt.startswith(b"NaN") else "Infinity")
            if "number" in exc.msg and ("infinity" in exc.msg or "range" in exc.msg):
                raise _too_large(what) from None
            if "recursion" in exc.msg:
                raise _too_deep(what) from None
            if "utf-8" in exc.msg.lower() or "surrogate" in exc.msg.lower():
                raise _not_utf8(what, pos) from None
            raise _malformed(what, exc.lineno, exc.colno, exc.msg) from None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise _not_utf8(what, exc.start) from None
    except json.JSONDecodeError as exc:
        raise _malformed(what, exc.lineno, exc.colno, exc.msg) from None
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError:  # an integer beyond Python's digit limit
        raise _too_large(what) from None


def _too_large(what: str) -> BadRequestError:
    return BadRequestError(
        f"The {what} holds a number too large to decode (beyond 64-bit integers or doubles, or "
        "with thousands of digits). Send numbers that fit the tensor's datatype."
    )


def _too_deep(what: str) -> BadRequestError:
    return BadRequestError(f"The {what} is nested too deeply to decode; send flat data arrays.")


def _not_utf8(what: str, pos: int) -> BadRequestError:
    return BadRequestError(
        f"Expected the {what} to be UTF-8 JSON; got undecodable bytes at position {pos}. When "
        f"sending binary tensors, set the {HEADER_LENGTH} header to the length of the JSON part."
    )


def _check_parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(
            f"Expected {where} to be an object of scalar parameters; got {_type_name(value)}."
        )
    for k, v in value.items():
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise BadRequestError(
                f"Expected parameter {k!r} in {where} to be a string, number or boolean "
                f"(protocol parameters are scalars); got {_type_name(v)}."
            )
    return value


def _check_shape(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, list) and len(value) > MAX_RANK:  # before any work that grows with it
        raise BadRequestError(
            f"Expected {where} 'shape' to have at most {MAX_RANK} dimensions; got {len(value)}."
        )
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in value
    ):
        raise BadRequestError(
            f"Expected {where} 'shape' to be a list of non-negative 64-bit integers; got "
            f"{_preview(value)}."
        )
    return tuple(value)


def _element_count(shape: tuple[int, ...], limit: int, name: str) -> int:
    """The number of elements of ``shape``, refusing more than ``limit`` (the body's size)."""
    if 0 in shape:
        return 0
    count = 1
    for d in shape:
        count *= d
        if count > limit:
            raise BadRequestError(
                f"Input {name!r} declares shape {_preview(list(shape))}: more than {limit} "
                "elements, more than its request can hold. Check the shape."
            )
    return count


_CHUNK = 1 << 16


def _to_array(data: list[Any]) -> NDArray[Any]:
    """``np.array(data)`` of a flat list, chunk by chunk (a worker thread then lets the event
    loop run between chunks); a mix of numbers and other values comes back as the other kind."""
    if len(data) <= _CHUNK or isinstance(data[0], list):
        return np.array(data)
    parts = [np.array(data[i : i + _CHUNK]) for i in range(0, len(data), _CHUNK)]
    odd = [p for p in parts if p.dtype.kind not in "iuf"]
    if odd and len(odd) < len(parts):
        return odd[0]
    return np.concatenate(parts)


def _decode_json_data(
    data: Any, datatype: str, shape: tuple[int, ...], name: str, count: int
) -> NDArray[Any]:
    dtype = DATATYPES[datatype]
    if not isinstance(data, list):
        raise BadRequestError(
            f"Expected 'data' of input {name!r} to be a list of {count} value(s); got "
            f"{_type_name(data)}."
        )
    if data and not isinstance(data[0], list) and len(data) != count:  # flat: count cheaply
        raise BadRequestError(
            f"Input {name!r} has shape {list(shape)}, so {count} element(s), but its data holds "
            f"{len(data)}. Send exactly one value per element, in row-major order."
        )
    if datatype == "BYTES":
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise BadRequestError(
                f"Expected the data of BYTES input {name!r} to be strings; got another type."
            )
        arr = np.empty(len(flat), dtype=object)
        arr[:] = [v.encode("utf-8") for v in flat]
    else:
        try:
            arr = _to_array(data)
        except (ValueError, TypeError) as exc:
            raise BadRequestError(
                f"Expected 'data' of input {name!r} to be a flat (or regularly nested) list of "
                f"numbers; got a ragged or mixed list ({exc})."
            ) from exc
        arr = arr.reshape(-1)
        kind = arr.dtype.kind
        if arr.size and datatype == "BOOL" and kind != "b":
            raise BadRequestError(
                f"Expected the data of BOOL input {name!r} to be true/false; got values of "
                f"numpy kind {arr.dtype}."
            )
        if arr.size and datatype != "BOOL":
            allowed = "iu" if dtype.kind in "iu" else "iuf"
            if kind not in allowed:
                what = "integers" if dtype.kind in "iu" else "numbers"
                got = {"f": "non-integer numbers", "b": "booleans"}.get(kind, "non-numbers")
                raise BadRequestError(
                    f"Expected the data of {datatype} input {name!r} to be {what}; got {got}."
                )
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                if kind == "O" or int(arr.min()) < info.min or int(arr.max()) > info.max:
                    raise BadRequestError(
                        f"Expected the data of {datatype} input {name!r} to lie in "
                        f"[{info.min}, {info.max}]; got values in [{arr.min()}, {arr.max()}]."
                    )
            elif kind == "f" and dtype.itemsize < 8:
                big = np.abs(arr) > np.finfo(dtype).max
                if big.any():
                    raise BadRequestError(
                        f"Input {name!r} holds {int(big.sum())} value(s) too large for "
                        f"{datatype}; send them as FP64 or scale them."
                    )
        arr = arr.astype(dtype, copy=False)
    if arr.size != count:
        raise BadRequestError(
            f"Input {name!r} has shape {list(shape)}, so {count} element(s), but its data holds "
            f"{arr.size}. Send exactly one value per element, in row-major order."
        )
    return arr.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _decode_binary(
    raw: bytes, datatype: str, shape: tuple[int, ...], name: str, count: int
) -> NDArray[Any]:
    if datatype == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise BadRequestError(
                    f"Binary data of BYTES input {name!r} ends inside a 4-byte length prefix."
                )
            (n,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + n > len(raw):
                raise BadRequestError(
                    f"Binary data of BYTES input {name!r} is truncated: an element of {n} "
                    f"bytes runs past the end of its {len(raw)} bytes."
                )
            items.append(raw[pos : pos + n])
            pos += n
        if len(items) != count:
            raise BadRequestError(
                f"Input {name!r} has shape {list(shape)}, so {count} element(s), but its binary "
                f"data holds {len(items)}."
            )
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dtype = DATATYPES[datatype]
    want = count * dtype.itemsize
    if len(raw) != want:
        raise BadRequestError(
            f"Input {name!r} of shape {list(shape)} and datatype {datatype} needs {want} bytes of "
            f"binary data ({count} x {dtype.itemsize}); got {len(raw)}. Check binary_data_size "
            "and the tensor's dtype."
        )
    src = _LITTLE.get(datatype, dtype)
    arr = np.frombuffer(raw, dtype=src).astype(dtype, copy=False)
    if datatype == "BOOL" and arr.size and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise BadRequestError(f"Binary data of BOOL input {name!r} holds bytes other than 0/1.")
    return arr.reshape(shape)


def parse_infer_request(
    body: bytes,
    header_length: int | str | None = None,
    *,
    max_inputs: int = 64,
    specs: Sequence[TensorSpec] = (),
    max_batch: int | None = None,
) -> InferRequest:
    """Decode an inference request body (JSON, or JSON + binary tensors).

    Parameters
    ----------
    body : bytes
        The whole HTTP request body.
    header_length : int or str, optional
        Value of the ``Inference-Header-Content-Length`` header: the JSON part's length in bytes.
        Without it, the whole body is JSON.
    max_inputs : int, default=64
        Reject requests with more inputs than this.
    specs : sequence of TensorSpec, optional
        The model's inputs: an input named like one of them has its datatype and shape (rank
        first) checked against it before its data is decoded.
    max_batch : int, optional
        Reject a declared first dimension larger than this, before decoding the data.

    Returns
    -------
    InferRequest

    Raises
    ------
    BadRequestError
        Malformed JSON, missing or mistyped fields, element counts that do not match the
        shape, binary data sizes that do not add up. The message says what was expected.

    Examples
    --------
    >>> import json, numpy as np
    >>> header = json.dumps({"inputs": [{"name": "x", "shape": [3], "datatype": "UINT8",
    ...                                   "parameters": {"binary_data_size": 3}}]}).encode()
    >>> req = parse_infer_request(header + bytes([1, 2, 255]), header_length=len(header))
    >>> req.inputs[0].data
    array([  1,   2, 255], dtype=uint8)
    >>> parse_infer_request(b"{")
    Traceback (most recent call last):
    ...
    cascadekit.oip.BadRequestError: Expected the request body to be JSON; ...
    """
    if header_length is None:
        json_part, binary = body, b""
    else:
        try:
            hl = int(header_length)
        except (TypeError, ValueError):
            hl = -1
        if hl < 0 or hl > len(body):
            raise BadRequestError(
                f"Expected the {HEADER_LENGTH} header to be an integer in [0, {len(body)}] (the "
                f"body's length); got {header_length!r}."
            )
        json_part, binary = body[:hl], body[hl:]
    doc = loads_json(json_part, "request body")
    if not isinstance(doc, dict):
        raise BadRequestError(
            f"Expected the request body to be a JSON object with an 'inputs' list; got "
            f"{_type_name(doc)}."
        )
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequestError(
            "Expected 'inputs' to be a non-empty list of tensors {name, shape, datatype, data}; "
            f"got {_type_name(raw_inputs) if 'inputs' in doc else 'no inputs field'}."
        )
    if len(raw_inputs) > max_inputs:
        raise BadRequestError(f"Expected at most {max_inputs} inputs; got {len(raw_inputs)}.")
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise BadRequestError(f"Expected 'id' to be a string; got {_type_name(req_id)}.")
    params = _check_parameters(doc.get("parameters"), "the request 'parameters'")
    inputs: list[InputTensor] = []
    offset = 0
    seen: set[str] = set()
    for i, t in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise BadRequestError(f"Expected {where} to be an object; got {_type_name(t)}.")
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequestError(f"Expected {where} to have a string 'name'; got {name!r}.")
        if name in seen:
            raise BadRequestError(f"Input {name!r} appears twice; send each input once.")
        seen.add(name)
        datatype = t.get("datatype")
        if datatype not in DATATYPES:
            raise BadRequestError(
                f"Expected the 'datatype' of input {name!r} to be one of "
                f"{', '.join(DATATYPES)}; got {datatype!r}."
            )
        shape = _check_shape(t.get("shape"), f"input {name!r}")
        for spec in specs:
            if spec.name == name:
                spec.check_header(datatype, shape)
        if max_batch is not None and shape and shape[0] > max_batch:
            raise BadRequestError(
                f"Expected at most {max_batch} inputs per request; got {shape[0]}. Split the "
                "batch into several requests."
            )
        tparams = _check_parameters(t.get("parameters"), f"the parameters of input {name!r}")
        size = tparams.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise BadRequestError(
                    f"Expected binary_data_size of input {name!r} to be a non-negative "
                    f"integer; got {size!r}."
                )
            if header_length is None:
                raise BadRequestError(
                    f"Input {name!r} declares binary_data_size={size} but the request has no "
                    f"{HEADER_LENGTH} header. Set it to the length of the JSON part."
                )
            if offset + size > len(binary):
                raise BadRequestError(
                    f"Input {name!r} declares binary_data_size={size} at offset {offset}, but "
                    f"only {len(binary)} bytes of binary data follow the JSON header."
                )
            if "data" in t:
                raise BadRequestError(
                    f"Input {name!r} has both 'data' and binary_data_size; send one of them."
                )
            count = _element_count(shape, 2**62, name)
            data = _decode_binary(binary[offset : offset + size], datatype, shape, name, count)
            offset += size
        else:
            if "data" not in t:
                raise BadRequestError(
                    f"Expected input {name!r} to have 'data' (or parameters.binary_data_size "
                    "with binary data); got neither."
                )
            count = _element_count(shape, max(len(body), 1), name)
            data = _decode_json_data(t["data"], datatype, shape, name, count)
        inputs.append(InputTensor(name, shape, datatype, data, tparams))
    if offset != len(binary):
        raise BadRequestError(
            f"The inputs declare {offset} bytes of binary data but {len(binary)} follow the JSON "
            f"header. Check {HEADER_LENGTH} and each binary_data_size."
        )
    outputs = None
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise BadRequestError(
                f"Expected 'outputs' to be a list of {{name, parameters}}; got "
                f"{_type_name(raw_outputs)}."
            )
        outputs = []
        for i, o in enumerate(raw_outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise BadRequestError(
                    f"Expected outputs[{i}] to be an object with a string 'name'; got "
                    f"{_preview(o)}."
                )
            oparams = _check_parameters(o.get("parameters"), f"outputs[{i}].parameters")
            binary_flag = oparams.get("binary_data")
            outputs.append(
                RequestedOutput(
                    o["name"], None if binary_flag is None else bool(binary_flag), oparams
                )
            )
    return InferRequest(inputs=inputs, id=req_id, parameters=params, outputs=outputs)


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
                f"{_preview(value)}."
            )
        out.append(f)
    if len(out) != n_thresholds:
        raise BadRequestError(
            f"Expected {n_thresholds} threshold(s) in parameters.threshold for a "
            f"{n_thresholds + 1}-stage cascade; got {len(out)} ({_preview(value)}). Separate "
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
            f"1000000 for one second); got {_preview(value)}."
        )
    if not math.isfinite(value):
        return None
    return float(value) / 1e6


# ------------------------------------------------------------------------------------ encoding


def _json_data(arr: NDArray[Any]) -> list[Any]:
    if arr.dtype.kind == "f":
        flat = arr.reshape(-1).astype(np.float64)
        if not np.isfinite(flat).all():
            # JSON has no NaN/inf: encode them as null (the protocol has no convention)
            return [None if not math.isfinite(v) else v for v in flat.tolist()]
        return list(flat.tolist())
    if arr.dtype == object:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.flat]
    return list(arr.reshape(-1).tolist())


def _binary_data(arr: NDArray[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in arr.reshape(-1):
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=_LITTLE.get(datatype, DATATYPES[datatype])).tobytes()


def encode_infer_response(
    model_name: str,
    outputs: Sequence[OutputTensor],
    *,
    model_version: str | None = None,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    binary: bool | Sequence[str] = False,
) -> tuple[bytes, int | None]:
    """Encode an inference response.

    Parameters
    ----------
    model_name : str
    outputs : sequence of OutputTensor
    model_version : str, optional
    request_id : str, optional
        Echoed as ``id``.
    parameters : mapping, optional
        Response-level parameters (scalars; a non-finite float is written as null).
    binary : bool or sequence of str
        Send every output (True) or the named ones as binary data.

    Returns
    -------
    body : bytes
    header_length : int or None
        Set the ``Inference-Header-Content-Length`` header to it when not None.

    Examples
    --------
    >>> body, n = encode_infer_response("m", [OutputTensor("p", np.ones(2, np.float32))],
    ...                                 binary=True)
    >>> body[:n].decode()
    '{"model_name":"m","outputs":[{"name":"p","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}'
    >>> np.frombuffer(body[n:], np.float32)
    array([1., 1.], dtype=float32)
    """
    binary_names = {o.name for o in outputs} if binary is True else set(binary or ())
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["outputs"], blobs = _encode_tensors(outputs, binary_names)
    return _join(doc, blobs, fast=True)


def _encode_tensors(
    tensors: Sequence[OutputTensor], binary_names: set[str]
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The JSON entries of ``tensors`` and the raw bytes of those sent as binary data."""
    entries = []
    blobs: list[bytes] = []
    for o in tensors:
        arr = np.asarray(o.data)
        datatype = o.datatype or datatype_of(arr.dtype)
        entry: dict[str, Any] = {
            "name": o.name,
            "shape": [int(d) for d in arr.shape],
            "datatype": datatype,
        }
        oparams = dict(o.parameters)
        if o.name in binary_names:
            blob = _binary_data(arr, datatype)
            oparams["binary_data_size"] = len(blob)
            blobs.append(blob)
        else:
            entry["data"] = _json_data(arr)
        if oparams:
            entry["parameters"] = oparams
        entries.append(entry)
    return entries, blobs


def _join(doc: dict[str, Any], blobs: list[bytes], fast: bool = False) -> tuple[bytes, int | None]:
    # fast: the server's own answer (finite numbers only: _json_data writes NaN as null),
    # encoded with orjson when it is installed
    header = None
    if fast and _orjson is not None:
        with contextlib.suppress(TypeError):  # e.g. an integer beyond 64 bits
            header = _orjson.dumps(doc)
    if header is None:
        header = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def encode_infer_request(
    inputs: Sequence[OutputTensor],
    *,
    outputs: Sequence[str] | None = None,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    binary: bool | Sequence[str] = False,
) -> tuple[bytes, int | None]:
    """Encode an inference request (the client's side of :func:`parse_infer_request`).

    Parameters
    ----------
    inputs : sequence of OutputTensor
        The tensors to send (name, array, optional datatype).
    outputs : sequence of str, optional
        Names of the outputs to ask for (default: the server's default outputs).
    request_id : str, optional
    parameters : mapping, optional
        Request-level parameters (scalars).
    binary : bool or sequence of str
        Send every input (True) or the named ones as binary data.

    Returns
    -------
    body : bytes
    header_length : int or None
        Set the ``Inference-Header-Content-Length`` header to it when not None.

    Examples
    --------
    >>> body, n = encode_infer_request([OutputTensor("x", np.array([[1.0, 2.0]], np.float32))])
    >>> parse_infer_request(body, n).inputs[0].data
    array([[1., 2.]], dtype=float32)
    """
    names = {t.name for t in inputs} if binary is True else set(binary or ())
    doc: dict[str, Any] = {}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["inputs"], blobs = _encode_tensors(inputs, names)
    if outputs is not None:
        doc["outputs"] = [{"name": str(o)} for o in outputs]
    return _join(doc, blobs)


def decode_tensor(
    entry: Mapping[str, Any], raw: bytes | None = None, *, limit: int | None = None
) -> NDArray[Any]:
    """The array of one tensor of a request or response: its JSON ``data``, or ``raw`` bytes
    of the binary extension. Datatype, shape and element count are checked; JSON ``null``
    (how a non-finite float travels) becomes NaN in a floating-point tensor.

    Raises
    ------
    BadRequestError
        An unknown datatype, a bad shape, data that does not match them.

    Examples
    --------
    >>> decode_tensor({"name": "p", "datatype": "FP64", "shape": [2], "data": [0.5, None]})
    array([0.5, nan])
    """
    name = str(entry.get("name"))
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequestError(
            f"Expected the datatype of tensor {name!r} to be one of {sorted(DATATYPES)}; got "
            f"{_preview(datatype)}."
        )
    shape = _check_shape(entry.get("shape"), f"tensor {name!r}")
    data = entry.get("data")
    if limit is None:  # no more elements than the data holds
        size = len(raw) if raw is not None else len(_flatten(data)) if isinstance(data, list) else 0
        limit = max(size, 1)
    count = _element_count(shape, limit, name)
    if raw is not None:
        return _decode_binary(raw, datatype, shape, name, count)
    if datatype.startswith("FP") and isinstance(data, list) and None in data:
        data = [math.nan if v is None else v for v in data]
    return _decode_json_data(data, datatype, shape, name, count)


def encode_error(message: str) -> bytes:
    """The protocol's error body ``{"error": message}``.

    Examples
    --------
    >>> encode_error("no such model")
    b'{"error": "no such model"}'
    """
    return json.dumps({"error": message}).encode()


def server_metadata(name: str, version: str, extensions: Sequence[str] = ()) -> dict[str, Any]:
    """The ``GET /v2`` document.

    Examples
    --------
    >>> server_metadata("cascadekit", "0.1.0", ["binary_tensor_data"])["extensions"]
    ['binary_tensor_data']
    """
    return {"name": name, "version": version, "extensions": list(extensions)}


def model_metadata(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    versions: Sequence[str] = ("1",),
    platform: str = "cascadekit",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``GET /v2/models/{name}`` document.

    Examples
    --------
    >>> doc = model_metadata("m", [TensorSpec("x", ("FP32",), (-1, 4))], [])
    >>> doc["inputs"], doc["versions"]
    ([{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 4]}], ['1'])
    """
    doc: dict[str, Any] = {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [t.to_metadata() for t in inputs],
        "outputs": [t.to_metadata() for t in outputs],
    }
    if parameters:
        doc["parameters"] = dict(parameters)
    return doc
