"""Loading saved outputs from files, and router files: round trips, schema, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from cascadekit import scores
from cascadekit.errors import (
    CascadeError,
    ClassCountError,
    DataNotFoundError,
    LabelError,
    RouterFileError,
    UnknownNameError,
)
from cascadekit.io import load_array, read_array
from cascadekit.router import Router
from cascadekit.schemas import load_schema

RNG = np.random.default_rng(2)
LOGITS = RNG.normal(size=(6, 3))
LABELS = np.array([0, 2, 1, 1, 0, 2])


def test_npy_npz_csv_parquet_round_trip(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", LOGITS)
    np.savez(tmp_path / "a.npz", logits=LOGITS, labels=LABELS)
    np.savetxt(tmp_path / "a.csv", LOGITS, delimiter=",", header="c0,c1,c2", comments="")
    np.savetxt(tmp_path / "y.csv", LABELS, delimiter=",", fmt="%d")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({f"c{i}": LOGITS[:, i] for i in range(3)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"y": LABELS}), tmp_path / "y.parquet")
    for name in ("a.npy", "a.npz", "a.csv", "a.parquet"):
        np.testing.assert_allclose(load_array(tmp_path / name), LOGITS)
    np.testing.assert_array_equal(load_array(tmp_path / "a.npz", key="labels"), LABELS)
    for name in ("y.csv", "y.parquet"):
        y = load_array(tmp_path / name)
        assert y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
        np.testing.assert_array_equal(y, LABELS)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="Expected a file at .*nothing is there"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(UnknownNameError, match=r"ending in one of \.npy"):
        load_array(tmp_path / "x.txt")
    np.savez(tmp_path / "a.npz", logits=LOGITS)
    with pytest.raises(UnknownNameError, match="No array named 'nope' .* holds logits"):
        load_array(tmp_path / "a.npz", key="nope")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(CascadeError, match="Could not read .* as a .npy array"):
        load_array(tmp_path / "bad.npy")
    np.save(tmp_path / "a.npy", LOGITS)
    with pytest.raises(UnknownNameError, match="only applies to .npz"):
        load_array(tmp_path / "a.npy", key="logits")


def test_router_round_trip_and_schema(tmp_path: Path) -> None:
    r = Router(
        score="energy",
        thresholds=[1.5, math.inf, -math.inf][:2],
        temperature=2.0,
        costs=[1.0, 3.0, 9.0],
        stage_names=["s", "m", "t"],
        class_maps=[[0, 1, -1], None, None],
        other_class=[2, None, None],
        calibration={"method": "target_accuracy"},
    )
    path = tmp_path / "r.json"
    r.save(path)
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, load_schema("router"))
    assert doc["thresholds"] == [1.5, None]
    back = Router.load(path)
    assert back == r
    r2 = Router(score="margin", thresholds=[-math.inf])
    jsonschema.validate(r2.to_dict(), load_schema("router"))
    assert Router.from_dict(r2.to_dict()).thresholds == [-math.inf]


def test_router_applies_to_outputs() -> None:
    s = np.array([[4.0, 0.0], [0.1, 0.0]])
    t = np.array([[0.0, 1.0], [0.0, 1.0]])
    c = Router(score="margin", thresholds=[1.0], costs=[1.0, 4.0]).to_cascade([s, t])
    res = c.route()
    np.testing.assert_array_equal(res.stage, [0, 1])
    assert res.relative_cost == pytest.approx((1 + 5) / 2 / 4)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ([], "Expected a cascadekit router document"),
        ({"format": "other"}, "Expected a cascadekit router document"),
        (
            {"format": "cascadekit.router", "format_version": 9},
            r"format_version in \[1, 2\]; got 9",
        ),
        (
            {"format": "cascadekit.router", "format_version": 2, "score_form": "probability"},
            'Expected "score_form": "log" in a version-2 router file',
        ),
        (
            {"format": "cascadekit.router", "format_version": 1, "score": "energy"},
            "lacks the required field 'thresholds'",
        ),
        (
            {
                "format": "cascadekit.router",
                "format_version": 1,
                "score": "energy",
                "thresholds": [],
            },
            "non-empty list",
        ),
        (
            {
                "format": "cascadekit.router",
                "format_version": 1,
                "score": "energy",
                "thresholds": ["high"],
            },
            "number, null",
        ),
        (
            {
                "format": "cascadekit.router",
                "format_version": 1,
                "score": "energy",
                "thresholds": [1.0],
                "costs": [1, 2, 3],
            },
            "one entry per stage",
        ),
    ],
)
def test_router_bad_documents(doc: object, match: str) -> None:
    with pytest.raises(RouterFileError, match=match):
        Router.from_dict(doc)


def test_router_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="router file"):
        Router.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RouterFileError, match="not valid JSON"):
        Router.load(tmp_path / "bad.json")
    r = Router(score="energy", thresholds=[1.0])
    with pytest.raises(RouterFileError, match="routes 2 stages; got outputs for 3"):
        r.to_cascade([LOGITS, LOGITS, LOGITS])
    bad = r.to_dict() | {"score": "nope"}
    with pytest.raises(UnknownNameError, match="Unknown score 'nope'"):
        Router.from_dict(bad)


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["router_v1_max_softmax.json", "router_v1_entropy.json"])
def test_version_1_router_files_keep_their_meaning(name: str) -> None:
    # version-1 files hold p_max and -H thresholds: loaded, they route as they always did
    doc = json.loads((DATA / name).read_text())
    router = Router.load(DATA / name)
    rng = np.random.default_rng(7)
    outs = [rng.normal(scale=4.0, size=(4000, 10)) for _ in range(router.n_stages)]
    plain = scores.max_probability if doc["score"] == "max_softmax" else scores.negative_entropy
    t = doc["temperature"]
    expected_stage = np.full(4000, router.n_stages - 1)
    decided = np.zeros(4000, dtype=bool)
    for k in range(router.n_stages - 1):
        keep = (plain(outs[k], t) >= doc["thresholds"][k]) & ~decided
        expected_stage[keep] = k
        decided |= keep
    got = router.to_cascade(outs).route().stage
    np.testing.assert_array_equal(got, expected_stage)
    # saved again, the file is version 2 with thresholds in the routing form
    saved = router.to_dict()
    assert saved["format_version"] == 2 and saved["score_form"] == "log"
    jsonschema.validate(saved, load_schema("router"))
    assert Router.from_dict(saved).thresholds == router.thresholds
    assert router.thresholds == [
        scores.from_probability_form(doc["score"], v) for v in doc["thresholds"]
    ]


BIG = np.random.default_rng(4).normal(size=(40, 12))


@pytest.mark.parametrize(
    "names",
    [
        [f"class_{k}" for k in range(12)][::-1],  # written class_11 ... class_0
        sorted(str(k) for k in range(12)),  # '0', '1', '10', '11', '2', ...
        sorted(str(k + 1) for k in range(12)),  # 1-based, lexicographic
    ],
)
def test_named_columns_are_matched_to_classes(tmp_path: Path, names: list[str]) -> None:
    import pandas as pd

    nums = [int(n.removeprefix("class_")) for n in names]
    first = min(nums)
    df = pd.DataFrame({n: BIG[:, k - first] for n, k in zip(names, nums, strict=True)})
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        r = read_array(tmp_path / name)
        np.testing.assert_allclose(r.array, BIG)
        assert any("numeric order" in n for n in r.notes)


def test_unordered_names_are_refused_or_matched_by_classes(tmp_path: Path) -> None:
    import pandas as pd

    animals = ["dog", "cat", "bird"]
    pd.DataFrame(BIG[:, :3], columns=animals).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(ClassCountError, match=r"named 'dog', 'cat', 'bird': .* cannot tell"):
        load_array(tmp_path / "a.csv")
    got = load_array(tmp_path / "a.csv", classes=["bird", "cat", "dog"])
    np.testing.assert_allclose(got, BIG[:, [2, 1, 0]])
    with pytest.raises(ClassCountError, match=r"no column for \['fish'\]"):
        load_array(tmp_path / "a.csv", classes=["bird", "cat", "dog", "fish"])


def test_index_and_id_columns_are_dropped(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(BIG, columns=[f"class_{k}" for k in range(12)])
    df.to_csv(tmp_path / "pandas_default.csv")  # index=True: an unnamed first column
    df.insert(0, "id", np.arange(40) + 1000)
    df.to_parquet(tmp_path / "with_id.parquet")
    df.rename(columns={"id": "Unnamed: 0"}).to_csv(tmp_path / "reread.csv", index=False)
    np.savetxt(tmp_path / "plain.csv", np.c_[np.arange(40), BIG], delimiter=",")
    for name, dropped in [
        ("pandas_default.csv", "''"),
        ("with_id.parquet", "'id'"),
        ("reread.csv", "'Unnamed: 0'"),
        ("plain.csv", "1"),
    ]:
        r = read_array(tmp_path / name)
        np.testing.assert_allclose(r.array, BIG)
        assert r.notes[0].startswith(f"dropped column {dropped} of {name}"), r.notes
    pd.Series(LABELS, name="label").to_csv(tmp_path / "y.csv")
    np.testing.assert_array_equal(load_array(tmp_path / "y.csv"), LABELS)


def test_text_labels_need_classes_and_the_message_points_at_the_cell(tmp_path: Path) -> None:
    import pandas as pd

    words = np.array(["cat", "dog", "bird"])
    pd.Series(words[LABELS], name="label").to_csv(tmp_path / "y.csv", index=False)
    with pytest.raises(
        LabelError, match=r"got 'cat' on line 2, column 1 \('label'\)\. Logits"
    ) as e:
        load_array(tmp_path / "y.csv")
    assert not str(e.value).replace("0..C-1", "").replace("[...]", "").count("..")
    pd.DataFrame({"id": range(6), "label": words[LABELS]}).to_csv(tmp_path / "y2.csv", index=False)
    with pytest.raises(LabelError, match=r"on line 2, column 2 \('label'\)"):
        load_array(tmp_path / "y2.csv")
    got = load_array(tmp_path / "y2.csv", classes=["cat", "dog", "bird"])
    np.testing.assert_array_equal(got, LABELS)
    np.save(tmp_path / "y.npy", words[LABELS])
    np.testing.assert_array_equal(load_array(tmp_path / "y.npy", classes=list(words)), LABELS)
    with pytest.raises(LabelError, match=r"among the classes \['cat', 'dog'\]; got 1 other"):
        load_array(tmp_path / "y.npy", classes=["cat", "dog"])


def test_npz_with_several_arrays_says_which_it_took(tmp_path: Path) -> None:
    np.savez(tmp_path / "bundle.npz", logits=LOGITS, y=LABELS)
    r = read_array(tmp_path / "bundle.npz")
    assert r.notes == [
        "bundle.npz holds 2 arrays (logits, y): using the first, 'logits'; pick another with "
        "key=NAME"
    ]
    np.testing.assert_array_equal(read_array(tmp_path / "bundle.npz", key="y").array, LABELS)
