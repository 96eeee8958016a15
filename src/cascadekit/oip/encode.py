"""Encoding responses, requests, errors and metadata; decoding one response tensor."""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .decode import (
    ORJSON,
    check_shape,
    decode_binary,
    decode_json_data,
    element_count,
    flatten,
)
from .errors import BadRequestError
from .tensors import DATATYPES, LITTLE_ENDIAN, OutputTensor, TensorSpec, datatype_of, preview

__all__ = [
    "decode_tensor",
    "encode_error",
    "encode_infer_request",
    "encode_infer_response",
    "model_metadata",
    "server_metadata",
]


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
    return np.ascontiguousarray(
        arr, dtype=LITTLE_ENDIAN.get(datatype, DATATYPES[datatype])
    ).tobytes()


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
    if fast and ORJSON is not None:
        with contextlib.suppress(TypeError):  # e.g. an integer beyond 64 bits
            header = ORJSON.dumps(doc)
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
    >>> from cascadekit.oip import parse_infer_request
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
            f"{preview(datatype)}."
        )
    shape = check_shape(entry.get("shape"), f"tensor {name!r}")
    data = entry.get("data")
    if limit is None:  # no more elements than the data holds
        size = len(raw) if raw is not None else len(flatten(data)) if isinstance(data, list) else 0
        limit = max(size, 1)
    count = element_count(shape, limit, name)
    if raw is not None:
        return decode_binary(raw, datatype, shape, name, count)
    if datatype.startswith("FP") and isinstance(data, list) and None in data:
        data = [math.nan if v is None else v for v in data]
    return decode_json_data(data, datatype, shape, name, count)


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
