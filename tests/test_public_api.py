"""The public surface: `__all__` is exactly what the package exports, the core imports no heavy
extra (the README's and the site's Python blocks run in tests/test_docs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cascadekit

ROOT = Path(__file__).resolve().parents[1]


#: The exact names each package exports: a name added or removed is a decision (update this and
#: CHANGELOG), never an accident. (httpx pins its exports the same way.)
EXPORTED: dict[str, list[str]] = {
    "cascadekit": [
        "CalibrationResult",
        "Cascade",
        "CascadeClassifier",
        "CascadeError",
        "Curve",
        "PredictResult",
        "RouteResult",
        "Router",
        "RoutingState",
        "Stage",
        "__version__",
        "adapters",
        "assign_stages",
        "binary_logits",
        "calibration",
        "curves",
        "scores",
        "stats",
    ],
    "cascadekit.adapters": [
        "CallableModel",
        "ExportMismatchError",
        "HFModel",
        "Model",
        "ModelAdapter",
        "OnnxModel",
        "PrecomputedModel",
        "RemoteModel",
        "SentenceTransformerEncoder",
        "SklearnModel",
        "TextEncoderModel",
        "TorchModel",
        "align_classes",
        "as_model",
        "bundled_model_dir",
        "export_onnx",
        "n_inputs",
        "take",
        "take_slice",
    ],
    "cascadekit.curves": [
        "Curve",
        "FrontierPoint",
        "PoolFrontier",
        "SavingAtEqualAccuracy",
        "accuracy_at_budget",
        "apgr",
        "auc",
        "bootstrap_summary",
        "cascade_curve",
        "compute_saving_at_equal_accuracy",
        "correctness",
        "downsample",
        "gap_captured",
        "grid_curve",
        "oracle_auc",
        "oracle_curve",
        "pareto_front",
        "pool_frontier",
        "random_auc",
        "random_curve",
        "speedup_at_teacher_accuracy",
        "summarize",
        "teacher_share_at_teacher_accuracy",
        "threshold_grid",
    ],
    "cascadekit.data": [
        "CACHE_ENV",
        "CODE_VERSION",
        "DEFAULT_FASHION_MNIST_DIR",
        "FASHION_MNIST_CLASSES",
        "FASHION_MNIST_ENV",
        "FashionMnistZoo",
        "LogitPool",
        "MODEL_NAMES",
        "ModelRecipe",
        "ProgressFn",
        "SPLITS",
        "ZooRecipe",
        "cache_root",
        "default_recipe",
        "fashion_mnist_dir",
        "fashion_mnist_split_indices",
        "fashion_mnist_split_sizes",
        "load_fashion_mnist",
        "load_fashion_mnist_splits",
        "load_fashion_mnist_zoo",
        "recipe_hash",
    ],
    "cascadekit.detection": [
        "CanvasSpec",
        "CocoMAP",
        "DETECTION_CODE_VERSION",
        "DETECTION_SCORES",
        "DETECTION_SPLITS",
        "DetectionComparison",
        "DetectionDataset",
        "DetectionScorer",
        "Detections",
        "DetectorRecipe",
        "MatchedDetections",
        "TrainedDetector",
        "as_detections",
        "batched_nms",
        "box_area",
        "box_iou",
        "compare_detection_routers",
        "default_detector_recipes",
        "detection_cascade_curve",
        "detection_energy",
        "detection_gap_captured",
        "detection_oracle_gains",
        "detection_score",
        "load_detector",
        "load_detector_pair",
        "make_canvas_dataset",
        "mean_average_precision",
        "nms",
        "oracle_detection_curve",
        "predict",
        "random_detection_curve",
        "route_images",
        "speedup_at_map_fraction",
        "threshold_at_map",
    ],
    "cascadekit.monitoring": [
        "AdaptiveThreshold",
        "Alarm",
        "CascadeMonitor",
        "DropBound",
        "MonitorLog",
        "Proposal",
        "WindowTest",
        "audit_sample",
        "disagreement_bound",
        "propose_thresholds",
        "read_log",
        "score_drift_test",
        "share_test",
        "window_level",
    ],
    "cascadekit.oip": [
        "BadRequestError",
        "DATATYPES",
        "DeadlineExceededError",
        "HEADER_LENGTH",
        "InferRequest",
        "InputRejectedError",
        "InputTensor",
        "MAX_RANK",
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
    ],
    "cascadekit.policies": [
        "AutoResult",
        "CLASSIFIERS",
        "Decider",
        "ExitHeads",
        "FeatureSpec",
        "LearnedPolicy",
        "PolicyExitScore",
        "PolicyGraph",
        "PolicyRoute",
        "PolicyRouter",
        "auto_select",
        "committee_feature_names",
        "committee_features",
        "default_lambdas",
        "fit_decider",
        "fit_exit_heads",
        "hidden_features",
        "lambda_sweep",
        "load_policy_router",
        "logit_feature_names",
        "logit_features",
        "oracle_route",
        "policy_curve",
        "save_policy_router",
        "stack_features",
        "wbc_targets",
    ],
    "cascadekit.serve": [
        "ADMIN_TOKEN_ENV",
        "BadRequestError",
        "BatchPolicy",
        "ConfigError",
        "DeadlineExceededError",
        "InferResult",
        "InferenceService",
        "ModelNotFoundError",
        "ModelNotReadyError",
        "OverloadedError",
        "ProtocolError",
        "Reply",
        "ServeConfig",
        "ServeMetrics",
        "ServedModel",
        "StageBatcher",
        "TensorSpec",
        "create_app",
        "fashion_mnist_model",
        "load_config",
        "run",
        "tweet_sentiment_model",
    ],
    "cascadekit.training": [
        "Committee",
        "DeferralStudent",
        "RoutingScore",
        "SURROGATES",
        "TrainResult",
        "agreement",
        "committee_agreement",
        "compute_teacher_logits",
        "confidence_tune",
        "deferral",
        "distill",
        "fingerprint",
        "fit",
        "p_norm_softmax",
        "resolve_score",
        "train_committee",
        "train_deferral",
        "tune_p_norm",
    ],
}


@pytest.mark.parametrize("package", sorted(EXPORTED))
def test_exported_names_are_pinned(package: str) -> None:
    import importlib
    import types

    mod = importlib.import_module(package)
    assert len(set(mod.__all__)) == len(mod.__all__), "a name is listed twice in __all__"
    assert sorted(mod.__all__) == EXPORTED[package]
    for name in mod.__all__:
        assert getattr(mod, name, None) is not None, f"{package}.{name} is listed but missing"
    # every public, non-module attribute of the package is exported
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_") and n != "annotations" and not isinstance(v, types.ModuleType)
    }
    assert public <= set(mod.__all__), public - set(mod.__all__)


def test_cascade_classifier_is_loaded_on_first_use() -> None:
    code = (
        "import sys, cascadekit; before = 'sklearn' in sys.modules; "
        "cascadekit.CascadeClassifier; print(before, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False True"
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        cascadekit.Nope  # noqa: B018


def test_core_imports_no_heavy_extra() -> None:
    code = (
        "import sys, cascadekit, cascadekit.curves, cascadekit.calibration, cascadekit.stats, "
        "cascadekit.router, cascadekit.io;"
        "heavy = {'torch', 'onnxruntime', 'sklearn', 'matplotlib', 'fastapi', 'ray', "
        "'transformers', 'typer', 'rich'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
