"""The Open Inference Protocol over gRPC: protobuf messages to and from the codec's tensors.

The messages are those of ``grpc_predict_v2.proto`` (package ``inference``, the KServe v2 /
Triton ``GRPCInferenceService``), built from its compiled descriptor in a private descriptor
pool: a process may also import another copy of the same protocol (``tritonclient.grpc`` does)
without a clash of names in protobuf's default pool. It needs ``protobuf`` (the ``grpc`` extra).

A request decodes to the same :class:`~cascadekit.oip.InferRequest` as an HTTP body, with the
same checks: an input's declared datatype and shape are checked against the model's input
before its data is decoded, as is the batch size; ``raw_input_contents`` become arrays with
``np.frombuffer`` (no per-element Python work).

Examples
--------
>>> import numpy as np
>>> msg = message("ModelInferRequest")(model_name="m")
>>> t = msg.inputs.add(name="x", datatype="FP32", shape=[2])
>>> msg.raw_input_contents.append(np.array([1, 2], "<f4").tobytes())
>>> msg.parameters["threshold"].double_param = 0.5
>>> req = decode_infer_request(msg)
>>> req.inputs[0].data, req.parameters
(array([1., 2.], dtype=float32), {'threshold': 0.5})
>>> out = encode_infer_response("m", [OutputTensor("label", np.array([3, 1]))], "1")
>>> out.outputs[0].datatype, list(out.outputs[0].shape), len(out.raw_output_contents[0])
('INT64', [2], 16)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import UnknownNameError
from .decode import check_input_header, decode_binary, element_count
from .errors import BadRequestError
from .grpc_predict_v2_descriptor import SERIALIZED
from .tensors import (
    DATATYPES,
    LITTLE_ENDIAN,
    InferRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    TensorSpec,
    datatype_of,
)

__all__ = [
    "CONTENTS_FIELDS",
    "SERVICE",
    "decode_infer_request",
    "decode_parameters",
    "encode_infer_response",
    "encode_parameters",
    "message",
]

#: Full name of the gRPC service.
SERVICE = "inference.GRPCInferenceService"

#: Datatype -> the ``InferTensorContents`` field holding its elements (FP16 has none).
CONTENTS_FIELDS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_classes: dict[str, Any] = {}


def message(name: str) -> Any:
    """The protobuf message class ``inference.<name>`` (e.g. ``"ModelInferRequest"``).

    Examples
    --------
    >>> message("ServerLiveResponse")(live=True).SerializeToString()
    b'\\x08\\x01'
    >>> message("ServerLive")
    Traceback (most recent call last):
    ...
    cascadekit.errors.UnknownNameError: No message 'ServerLive' in grpc_predict_v2.proto; ...
    """
    if not _classes:
        require("google.protobuf", "grpc", "The gRPC protocol")
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(SERIALIZED))
        file = pool.FindFileByName("grpc_predict_v2.proto")
        for short, desc in file.message_types_by_name.items():
            _classes[short] = message_factory.GetMessageClass(desc)
    cls = _classes.get(name)
    if cls is None:
        raise UnknownNameError(
            f"No message {name!r} in grpc_predict_v2.proto; expected one of "
            f"{', '.join(sorted(_classes))}."
        )
    return cls


def decode_parameters(params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as a dict of Python scalars."""
    out: dict[str, Any] = {}
    for key, p in params.items():
        choice = p.WhichOneof("parameter_choice")
        if choice is None:
            raise BadRequestError(
                f"Parameter {key!r} in {where} has no value; set one of bool_param, "
                "int64_param, uint64_param, double_param or string_param."
            )
        out[key] = getattr(p, choice)
    return out


def encode_parameters(target: Any, params: Mapping[str, Any]) -> None:
    """Fill a ``map<string, InferParameter>`` from Python scalars (None values are left out)."""
    for key, v in params.items():
        if v is None:
            continue
        p = target[key]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            if v >= 2**63:
                p.uint64_param = v
            else:
                p.int64_param = v
        elif isinstance(v, float):
            p.double_param = v
        else:
            p.string_param = str(v)


def _decode_contents(contents: Any, datatype: str, shape: tuple[int, ...], name: str) -> Any:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise BadRequestError(
            f"Input {name!r} is {datatype}, which has no typed contents field in the protocol; "
            "send it in raw_input_contents."
        )
    used = [f.name for f, _ in contents.ListFields()]
    if used and used != [field]:
        raise BadRequestError(
            f"Expected the elements of {datatype} input {name!r} in contents.{field}; got "
            f"contents.{', contents.'.join(used)}."
        )
    values = getattr(contents, field)
    count = element_count(shape, 2**62, name)
    if len(values) != count:
        raise BadRequestError(
            f"Input {name!r} has shape {list(shape)}, so {count} element(s), but its "
            f"contents.{field} holds {len(values)}. Send exactly one value per element, in "
            "row-major order."
        )
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    dtype = DATATYPES[datatype]
    wide: NDArray[Any] = np.array(
        values, dtype={"b": np.bool_, "f": np.float64, "u": np.uint64}.get(dtype.kind, np.int64)
    )
    if dtype.kind in "iu" and wide.size and dtype.itemsize < 4:
        info = np.iinfo(dtype)
        lo, hi = int(wide.min()), int(wide.max())
        if lo < info.min or hi > info.max:
            raise BadRequestError(
                f"Expected the data of {datatype} input {name!r} to lie in [{info.min}, "
                f"{info.max}]; got values in [{lo}, {hi}]."
            )
    return wide.astype(dtype).reshape(shape)


def decode_infer_request(
    msg: Any,
    *,
    specs: Sequence[TensorSpec] = (),
    max_batch: int | None = None,
    max_inputs: int = 64,
) -> InferRequest:
    """Decode a ``ModelInferRequest`` message, with the checks of
    :func:`~cascadekit.oip.parse_infer_request`.

    Parameters
    ----------
    msg : ModelInferRequest
    specs : sequence of TensorSpec, optional
        The model's inputs: an input named like one of them has its datatype and shape checked
        against it before its data is decoded.
    max_batch : int, optional
        Reject a declared first dimension larger than this, before decoding the data.
    max_inputs : int, default=64
        Reject requests with more input tensors than this.

    Raises
    ------
    BadRequestError
        Missing or unknown datatypes, bad shapes, contents that do not match the shape,
        ``raw_input_contents`` that do not match the inputs.
    """
    inputs_msg = msg.inputs
    if not inputs_msg:
        raise BadRequestError(
            "Expected 'inputs' to hold at least one tensor {name, datatype, shape, contents}; "
            "got none."
        )
    if len(inputs_msg) > max_inputs:
        raise BadRequestError(f"Expected at most {max_inputs} inputs; got {len(inputs_msg)}.")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(inputs_msg):
        raise BadRequestError(
            f"Expected one raw_input_contents entry per input ({len(inputs_msg)}); got "
            f"{len(raw)}. Send every input's data either raw or in contents."
        )
    inputs: list[InputTensor] = []
    seen: set[str] = set()
    for i, t in enumerate(inputs_msg):
        name = t.name
        if not name:
            raise BadRequestError(f"Expected inputs[{i}] to have a name; got an empty one.")
        if name in seen:
            raise BadRequestError(f"Input {name!r} appears twice; send each input once.")
        seen.add(name)
        datatype, shape = check_input_header(name, t.datatype, list(t.shape), specs, max_batch)
        tparams = decode_parameters(t.parameters, f"the parameters of input {name!r}")
        if raw:
            if t.HasField("contents") and t.contents.ListFields():
                raise BadRequestError(
                    f"Input {name!r} has both contents and raw_input_contents; send one of them."
                )
            count = element_count(shape, 2**62, name)
            data = decode_binary(raw[i], datatype, shape, name, count)
        else:
            data = _decode_contents(t.contents, datatype, shape, name)
        inputs.append(InputTensor(name, shape, datatype, data, tparams))
    outputs = None
    if msg.outputs:
        outputs = []
        for o in msg.outputs:
            oparams = decode_parameters(o.parameters, f"the parameters of output {o.name!r}")
            outputs.append(RequestedOutput(o.name, None, oparams))
    return InferRequest(
        inputs=inputs,
        id=msg.id or None,
        parameters=decode_parameters(msg.parameters, "the request parameters"),
        outputs=outputs,
    )


def _raw_bytes(data: NDArray[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for v in data.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts += [len(b).to_bytes(4, "little"), b]
        return b"".join(parts)
    dt = LITTLE_ENDIAN.get(datatype, DATATYPES[datatype])
    return np.ascontiguousarray(data, dtype=dt).tobytes()


def encode_infer_response(
    model_name: str,
    outputs: Sequence[OutputTensor],
    model_version: str | None = None,
    *,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> Any:
    """A ``ModelInferResponse`` message, every output's data in ``raw_output_contents``."""
    msg = message("ModelInferResponse")(
        model_name=model_name, model_version=model_version or "", id=request_id or ""
    )
    encode_parameters(msg.parameters, parameters or {})
    for o in outputs:
        data = np.asarray(o.data)
        datatype = o.datatype or datatype_of(data.dtype)
        t = msg.outputs.add(name=o.name, datatype=datatype, shape=list(data.shape))
        encode_parameters(t.parameters, o.parameters)
        msg.raw_output_contents.append(_raw_bytes(data, datatype))
    return msg
