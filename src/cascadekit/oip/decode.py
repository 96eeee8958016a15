"""Decoding request bodies (JSON and the binary tensor extension) into numpy tensors."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import BadRequestError
from .tensors import (
    DATATYPES,
    HEADER_LENGTH,
    LITTLE_ENDIAN,
    MAX_RANK,
    InferRequest,
    InputTensor,
    RequestedOutput,
    TensorSpec,
    preview,
)

#: orjson (a faster JSON library, installed by the serve extra), or None: then the
#: standard library's json is used.
ORJSON: Any
try:
    import orjson as ORJSON
except ImportError:  # pragma: no cover - depends on the environment
    ORJSON = None

__all__ = ["loads_json", "parse_infer_request", "split_bytes", "utf8_texts"]


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
    cascadekit.oip.errors.BadRequestError: The request body holds a number too large ...
    """
    if ORJSON is not None:
        try:
            return ORJSON.loads(raw)
        except ORJSON.JSONDecodeError as exc:
            pos = exc.pos if isinstance(exc.pos, int) else 0
            nxt = bytes(raw[pos : pos + 9]).lstrip(b"-")
            if nxt.startswith((b"NaN", b"Infinity")):
                _reject_constant(nxt[:3].decode() if nxt.startswith(b"NaN") else "Infinity")
            if "number" in exc.msg and ("infinity" in exc.msg or "range" in exc.msg):
                raise _too_large(what) from None
            if "recursion" in exc.msg:
                raise _too_deep(what) from None
            if "utf-8" in exc.msg.lower():
                raise _not_utf8(what, _utf8_error_position(raw, pos)) from None
            if "surrogate" in exc.msg:
                raise _lone_surrogate(what, pos) from None
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


def _utf8_error_position(raw: bytes, default: int) -> int:
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return default


def _lone_surrogate(what: str, pos: int | None = None) -> BadRequestError:
    where = "" if pos is None else f" near position {pos}"
    return BadRequestError(
        f"The {what} holds a lone UTF-16 surrogate escape (such as \\ud800){where}, which is "
        "no character. Escape characters outside the BMP as a surrogate pair, "
        "or send the UTF-8 text itself."
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


def check_shape(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, list) and len(value) > MAX_RANK:  # before any work that grows with it
        raise BadRequestError(
            f"Expected {where} 'shape' to have at most {MAX_RANK} dimensions; got {len(value)}."
        )
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**63 for d in value
    ):
        raise BadRequestError(
            f"Expected {where} 'shape' to be a list of non-negative 64-bit integers; got "
            f"{preview(value)}."
        )
    return tuple(value)


def element_count(shape: tuple[int, ...], limit: int, name: str) -> int:
    """The number of elements of ``shape``, refusing more than ``limit`` (the body's size)."""
    if 0 in shape:
        return 0
    count = 1
    for d in shape:
        count *= d
        if count > limit:
            raise BadRequestError(
                f"Input {name!r} declares shape {preview(list(shape))}: more than {limit} "
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


def decode_json_data(
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
        arr = _json_strings(flatten(data), name)
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


def _json_strings(flat: list[Any], name: str) -> NDArray[Any]:
    """The UTF-8 bytes of a BYTES input's JSON strings, as an object array."""
    try:
        items = [v.encode("utf-8") for v in flat]
    except AttributeError:
        i, bad = next((i, v) for i, v in enumerate(flat) if not isinstance(v, str))
        raise BadRequestError(
            f"Expected the data of BYTES input {name!r} to be strings; element {i} is "
            f"{_type_name(bad)}. Send each element as a JSON string."
        ) from None
    except UnicodeEncodeError:
        i = next(i for i, v in enumerate(flat) if not _encodable(v))
        raise _lone_surrogate(f"data of BYTES input {name!r} (element {i})") from None
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_U32 = struct.Struct("<I")


def split_bytes(raw: bytes, name: str, count: int) -> list[bytes]:
    """The elements of a BYTES tensor in the binary extension's encoding.

    Each element is a 4-byte little-endian length followed by that many bytes. The walk is
    sequential (each element's offset depends on the lengths before it), so each element
    costs one length read and one slice; nothing is copied twice.

    Parameters
    ----------
    raw : bytes
        The tensor's binary data (``binary_data_size`` bytes).
    name : str
        The input's name, for error messages.
    count : int
        The number of elements its shape declares.

    Returns
    -------
    list of bytes

    Raises
    ------
    BadRequestError
        A length prefix cut short, an element running past the end, or another number of
        elements than ``count``.

    Examples
    --------
    >>> split_bytes(b"\\x02\\x00\\x00\\x00hi\\x00\\x00\\x00\\x00", "text", 2)
    [b'hi', b'']
    >>> split_bytes(b"\\x09\\x00\\x00\\x00hi", "text", 1)
    Traceback (most recent call last):
    ...
    cascadekit.oip.errors.BadRequestError: Binary data of BYTES input 'text' is truncated: ...
    """
    end = len(raw)
    unpack = _U32.unpack_from
    items: list[bytes] = []
    append = items.append
    pos = 0
    while pos < end:
        if pos + 4 > end:
            raise BadRequestError(
                f"Binary data of BYTES input {name!r} ends inside a 4-byte length prefix (at "
                f"byte {pos} of {end}). Encode each element as a 4-byte little-endian length "
                "followed by its bytes, and set binary_data_size to the total."
            )
        (n,) = unpack(raw, pos)
        pos += 4
        if pos + n > end:
            raise BadRequestError(
                f"Binary data of BYTES input {name!r} is truncated: element {len(items)} "
                f"declares {n} bytes but only {end - pos} follow. Encode each element as a "
                "4-byte little-endian length followed by its bytes."
            )
        if len(items) == count:
            raise BadRequestError(
                f"Input {name!r} has shape of {count} element(s), but its binary data holds "
                "more. Send exactly one length-prefixed element per element of the shape."
            )
        append(raw[pos : pos + n])
        pos += n
    if len(items) != count:
        raise BadRequestError(
            f"Input {name!r} declares {count} element(s), but its binary data holds "
            f"{len(items)}. Send exactly one length-prefixed element per element of the shape."
        )
    return items


def utf8_texts(name: str, data: NDArray[Any], max_bytes: int | None = None) -> NDArray[Any]:
    """The texts of a decoded BYTES input: UTF-8 decoded, flattened to shape ``(n,)``.

    For a text model whose input is a 1-D batch of strings (shape ``[n]`` or ``[n, 1]``).

    Parameters
    ----------
    name : str
        The input's name, for error messages.
    data : ndarray of bytes (object)
        The input as :func:`parse_infer_request` decodes it.
    max_bytes : int, optional
        Refuse an element longer than this many bytes.

    Returns
    -------
    ndarray of str (object), shape (n,)

    Raises
    ------
    BadRequestError
        An element that is not UTF-8, or longer than ``max_bytes``.

    Examples
    --------
    >>> utf8_texts("text", np.array([[b"caf\\xc3\\xa9"], [b"ok"]], dtype=object))
    array(['café', 'ok'], dtype=object)
    >>> utf8_texts("text", np.array([b"ok", b"\\xff"], dtype=object))
    Traceback (most recent call last):
    ...
    cascadekit.oip.errors.BadRequestError: Input 'text' expects UTF-8 text; element 1 is not ...
    """
    flat = data.reshape(-1)
    out = np.empty(flat.size, dtype=object)
    try:
        out[:] = [b.decode("utf-8") for b in flat]
    except (UnicodeDecodeError, AttributeError):
        for i, b in enumerate(flat):
            if not isinstance(b, bytes):
                raise BadRequestError(
                    f"Input {name!r} expects texts as BYTES; element {i} is "
                    f"{type(b).__name__}. Send the tensor with datatype BYTES."
                ) from None
            try:
                b.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequestError(
                    f"Input {name!r} expects UTF-8 text; element {i} is not valid UTF-8 (byte "
                    f"0x{b[exc.start]:02x} at position {exc.start}: {exc.reason}). Encode the "
                    "texts as UTF-8 before sending them."
                ) from None
        raise  # pragma: no cover - every element decodes on its own
    if max_bytes is not None:
        sizes = np.fromiter(map(len, flat), dtype=np.int64, count=flat.size)
        if sizes.size and int(sizes.max()) > max_bytes:
            i = int(sizes.argmax())
            raise BadRequestError(
                f"Input {name!r} takes texts of at most {max_bytes} bytes (UTF-8); element {i} "
                f"has {int(sizes[i])}. Shorten or split the text."
            )
    return out


def flatten(data: list[Any]) -> list[Any]:
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


def decode_binary(
    raw: bytes, datatype: str, shape: tuple[int, ...], name: str, count: int
) -> NDArray[Any]:
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        arr[:] = split_bytes(raw, name, count)
        return arr.reshape(shape)
    dtype = DATATYPES[datatype]
    want = count * dtype.itemsize
    if len(raw) != want:
        raise BadRequestError(
            f"Input {name!r} of shape {list(shape)} and datatype {datatype} needs {want} bytes of "
            f"binary data ({count} x {dtype.itemsize}); got {len(raw)}. Check binary_data_size "
            "and the tensor's dtype."
        )
    src = LITTLE_ENDIAN.get(datatype, dtype)
    arr = np.frombuffer(raw, dtype=src).astype(dtype, copy=False)
    if datatype == "BOOL" and arr.size and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise BadRequestError(f"Binary data of BOOL input {name!r} holds bytes other than 0/1.")
    return arr.reshape(shape)


def check_input_header(
    name: str,
    datatype: Any,
    shape: Any,
    specs: Sequence[TensorSpec] = (),
    max_batch: int | None = None,
) -> tuple[str, tuple[int, ...]]:
    """Check one input's header before its data is read: a known datatype, a valid shape, the
    model's input spec (when ``specs`` has one named ``name``) and at most ``max_batch`` rows.

    Shared by the JSON/binary REST codec and the gRPC one, so both refuse the same requests with
    the same messages.

    Returns
    -------
    (str, tuple of int)
        The datatype and the shape.

    Raises
    ------
    BadRequestError

    Examples
    --------
    >>> check_input_header("x", "FP32", [2, 3])
    ('FP32', (2, 3))
    >>> check_input_header("x", "FP32", [9, 3], max_batch=8)
    Traceback (most recent call last):
    ...
    cascadekit.oip.errors.BadRequestError: Expected at most 8 inputs per request; got 9. ...
    """
    if datatype not in DATATYPES:
        raise BadRequestError(
            f"Expected the 'datatype' of input {name!r} to be one of "
            f"{', '.join(DATATYPES)}; got {datatype!r}."
        )
    checked = check_shape(shape, f"input {name!r}")
    for spec in specs:
        if spec.name == name:
            spec.check_header(datatype, checked)
    if max_batch is not None and checked and checked[0] > max_batch:
        raise BadRequestError(
            f"Expected at most {max_batch} inputs per request; got {checked[0]}. Split the "
            "batch into several requests."
        )
    return str(datatype), checked


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
    cascadekit.oip.errors.BadRequestError: Expected the request body to be JSON; ...
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
        datatype, shape = check_input_header(
            name, t.get("datatype"), t.get("shape"), specs, max_batch
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
            count = element_count(shape, 2**62, name)
            data = decode_binary(binary[offset : offset + size], datatype, shape, name, count)
            offset += size
        else:
            if "data" not in t:
                raise BadRequestError(
                    f"Expected input {name!r} to have 'data' (or parameters.binary_data_size "
                    "with binary data); got neither."
                )
            count = element_count(shape, max(len(body), 1), name)
            data = decode_json_data(t["data"], datatype, shape, name, count)
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
                    f"Expected outputs[{i}] to be an object with a string 'name'; got {preview(o)}."
                )
            oparams = _check_parameters(o.get("parameters"), f"outputs[{i}].parameters")
            binary_flag = oparams.get("binary_data")
            outputs.append(
                RequestedOutput(
                    o["name"], None if binary_flag is None else bool(binary_flag), oparams
                )
            )
    return InferRequest(inputs=inputs, id=req_id, parameters=params, outputs=outputs)
