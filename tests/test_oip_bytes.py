"""BYTES tensors in the Open Inference Protocol codec: JSON strings and the binary encoding."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import cascadekit.oip.decode as decode_mod
from cascadekit.oip import (
    BadRequestError,
    OutputTensor,
    encode_infer_request,
    parse_infer_request,
    split_bytes,
    utf8_texts,
)


def _packed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip_json_and_binary(binary: bool) -> None:
    texts = ["good", "", "café ☕ 😍", "a\x00b"]
    arr = np.array([t.encode() for t in texts], dtype=object)
    body, n = encode_infer_request([OutputTensor("text", arr, "BYTES")], binary=binary)
    data = parse_infer_request(body, n).inputs[0].data
    assert data.dtype == object and data.shape == (4,)
    assert utf8_texts("text", data).tolist() == texts


def test_split_bytes_walks_length_prefixes() -> None:
    assert split_bytes(_packed(b"ab", b"", b"xyz"), "t", 3) == [b"ab", b"", b"xyz"]
    assert split_bytes(b"", "t", 0) == []


@pytest.mark.parametrize(
    ("raw", "count", "match"),
    [
        (b"\x02\x00", 1, r"ends inside a 4-byte length prefix \(at byte 0 of 2\)"),
        (_packed(b"ab") + b"\x01", 2, r"ends inside a 4-byte length prefix \(at byte 6 of 7\)"),
        (b"\x05\x00\x00\x00ab", 1, r"element 0 declares 5 bytes but only 2 follow"),
        (_packed(b"a"), 2, r"declares 2 element\(s\), but its binary data holds 1"),
        (_packed(b"a", b"b"), 1, r"shape of 1 element\(s\), but its binary data holds more"),
    ],
)
def test_split_bytes_errors(raw: bytes, count: int, match: str) -> None:
    with pytest.raises(BadRequestError, match=match):
        split_bytes(raw, "t", count)


def test_utf8_texts_flattens_a_column() -> None:
    col = np.array([[b"a"], [b"\xc3\xa9"]], dtype=object)
    assert utf8_texts("t", col).tolist() == ["a", "é"]


@pytest.mark.parametrize(
    ("items", "max_bytes", "match"),
    [
        ([b"ok", b"\xff\xfe"], None, r"element 1 is not valid UTF-8 \(byte 0xff at position 0"),
        ([b"ok", b"caf\xc3"], None, r"element 1 is not valid UTF-8 \(byte 0xc3 at position 3"),
        ([b"ok", "str"], None, r"expects texts as BYTES; element 1 is str"),
        ([b"ok", b"toolong"], 4, r"at most 4 bytes \(UTF-8\); element 1 has 7. Shorten"),
        ([b"ok", "é" * 3], None, r"expects texts as BYTES; element 1 is str"),
    ],
)
def test_utf8_texts_errors(items: list[object], max_bytes: int | None, match: str) -> None:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    with pytest.raises(BadRequestError, match=match):
        utf8_texts("t", arr, max_bytes)


def _json(data: object) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "t", "shape": [2], "datatype": "BYTES", "data": data}]}
    ).encode()


_BAD_UTF8 = _json(["a", "b"]).replace(b'"b"', b'"\xff"')


@pytest.mark.parametrize("orjson", [True, False])
@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_json(["a", None]), r"BYTES input 't' to be strings; element 1 is null"),
        (_json([["a"], [1]]), r"BYTES input 't' to be strings; element 1 is a number"),
        (_json("ab"), r"Expected 'data' of input 't' to be a list of 2 value\(s\); got a string"),
        (_json(["a"]), r"so 2 element\(s\), but its data holds 1"),
        (_json(["a", "\ud800"]), r"lone UTF-16 surrogate escape \(such as \\ud800\)"),
        (
            _BAD_UTF8,
            rf"to be UTF-8 JSON; got undecodable bytes at position {_BAD_UTF8.index(0xFF)}\.",
        ),
    ],
)
def test_json_strings_errors(
    body: bytes, match: str, orjson: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if orjson and decode_mod.ORJSON is None:
        pytest.skip("orjson is not installed")
    if not orjson:
        monkeypatch.setattr(decode_mod, "ORJSON", None)
    with pytest.raises(BadRequestError, match=match):
        parse_infer_request(body)
