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

from .decode import loads_json, parse_infer_request, split_bytes, utf8_texts
from .encode import (
    decode_tensor,
    encode_error,
    encode_infer_request,
    encode_infer_response,
    model_metadata,
    server_metadata,
)
from .errors import (
    BadRequestError,
    DeadlineExceededError,
    InputRejectedError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    ProtocolError,
)
from .parameters import parse_threshold_parameter, parse_timeout_parameter
from .tensors import (
    DATATYPES,
    HEADER_LENGTH,
    MAX_RANK,
    InferRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    TensorSpec,
    check_finite,
    datatype_of,
)

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
    "split_bytes",
    "utf8_texts",
]
