"""The Open Inference Protocol (KServe v2) over HTTP/JSON: a pure codec, no web framework.

This module turns request bodies into numpy tensors and results into response bodies, following
the protocol's field names (``inputs``/``outputs`` with ``name``, ``shape``, ``datatype``,
``data``; ``parameters``; ``{"error": "..."}`` on errors) and Triton's *binary tensor data
extension*: when the ``Inference-Header-Content-Length`` header is present, the body is a JSON
header of that many bytes followed by raw tensor bytes; an input carries
``parameters.binary_data_size``, and an output is sent as raw bytes when the request asks for it
(``outputs[i].parameters.binary_data`` or the request-level ``parameters.binary_data_output``).

It imports numpy only, so any HTTP front end (the FastAPI app of :mod:`cascadekit.serve.app`,
a Ray Serve ingress, a test) can reuse it. Errors are :class:`ProtocolError` subclasses carrying
the HTTP status to answer with.

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

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import CascadeError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "BadRequestError",
    "DeadlineExceededError",
    "InferRequest",
    "InputTensor",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "OutputTensor",
    "OverloadedError",
    "ProtocolError",
    "RequestedOutput",
    "TensorSpec",
    "datatype_of",
    "encode_error",
    "encode_infer_response",
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

    def check(self, tensor: InputTensor) -> None:
        """Raise :class:`BadRequestError` unless ``tensor`` matches this spec."""
        if tensor.datatype not in self.datatypes:
            raise BadRequestError(
                f"Input {self.name!r} expects datatype {' or '.join(self.datatypes)}; got "
                f"{tensor.datatype}. Send the tensor as {self.datatypes[0]}."
            )
        shape = tensor.shape
        ok = len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )
        if not ok:
            raise BadRequestError(
                f"Input {self.name!r} expects shape {list(self.shape)} (-1 = any size); got "
                f"{list(shape)}. Reshape the tensor, e.g. a single input as "
                f"[1, {', '.join(str(d) for d in self.shape[1:])}]."
            )
        if self.value_range is not None and tensor.data.size:
            lo, hi = self.value_range
            data = tensor.data
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                raise BadRequestError(
                    f"Input {self.name!r} holds {int((~np.isfinite(data)).sum())} non-finite "
                    f"value(s) (NaN or inf); expected numbers in [{lo:g}, {hi:g}]."
                )
            dmin, dmax = data.min(), data.max()
            if dmin < lo or dmax > hi:
                raise BadRequestError(
                    f"Input {self.name!r} expects values in [{lo:g}, {hi:g}]; got values in "
                    f"[{float(dmin):g}, {float(dmax):g}]. Send raw values, not normalised "
                    "or scaled ones."
                )


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


def _loads(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"Expected the {what} to be UTF-8 JSON; got undecodable bytes at position "
            f"{exc.start}. When sending binary tensors, set the {HEADER_LENGTH} header to the "
            "length of the JSON part."
        ) from exc
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"Expected the {what} to be JSON; it is malformed at line {exc.lineno} column "
            f"{exc.colno}: {exc.msg}. Send a JSON object such as "
            '{"inputs": [{"name": ..., "shape": [...], "datatype": ..., "data": [...]}]}.'
        ) from exc
    except RecursionError as exc:
        raise BadRequestError(
            f"The {what} is nested too deeply to decode; send flat data arrays."
        ) from exc


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
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise BadRequestError(
            f"Expected {where} 'shape' to be a list of non-negative integers; got {value!r}."
        )
    return tuple(value)


def _decode_json_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> NDArray[Any]:
    count = math.prod(shape)
    dtype = DATATYPES[datatype]
    if not isinstance(data, list):
        raise BadRequestError(
            f"Expected 'data' of input {name!r} to be a list of {count} value(s); got "
            f"{_type_name(data)}."
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
            arr = np.array(data)
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


def _decode_binary(raw: bytes, datatype: str, shape: tuple[int, ...], name: str) -> NDArray[Any]:
    count = math.prod(shape)
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
    body: bytes, header_length: int | str | None = None, *, max_inputs: int = 64
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
    cascadekit.serve.protocol.BadRequestError: Expected the request body to be JSON; ...
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
    doc = _loads(json_part, "request body")
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
            data = _decode_binary(binary[offset : offset + size], datatype, shape, name)
            offset += size
        else:
            if "data" not in t:
                raise BadRequestError(
                    f"Expected input {name!r} to have 'data' (or parameters.binary_data_size "
                    "with binary data); got neither."
                )
            data = _decode_json_data(t["data"], datatype, shape, name)
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
                    f"Expected outputs[{i}] to be an object with a string 'name'; got {o!r}."
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
        except (TypeError, ValueError):
            f = math.nan
        if math.isnan(f):
            raise BadRequestError(
                f"Expected parameters.threshold to be a number (or, for {n_thresholds + 1} "
                f'stages, {n_thresholds} comma-separated numbers such as "1.5,0.8"); got '
                f"{value!r}."
            )
        out.append(f)
    if len(out) != n_thresholds:
        raise BadRequestError(
            f"Expected {n_thresholds} threshold(s) in parameters.threshold for a "
            f"{n_thresholds + 1}-stage cascade; got {len(out)} ({value!r}). Separate them with "
            "commas."
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadRequestError(
            f"Expected parameters.timeout to be a positive number of microseconds (e.g. "
            f"1000000 for one second); got {value!r}."
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
        Response-level parameters (scalars).
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
    tensors = []
    blobs: list[bytes] = []
    for o in outputs:
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
        tensors.append(entry)
    doc["outputs"] = tensors
    header = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


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
