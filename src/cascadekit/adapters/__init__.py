"""Live models as cascade stages: one :class:`Model` protocol, ``inputs -> logits``.

============================  ===============================================  ===========
adapter                       wraps                                            extra
============================  ===============================================  ===========
:class:`TorchModel`           ``torch.nn.Module`` (eval mode, inference_mode)  ``torch``
:class:`OnnxModel`            ``.onnx`` file or onnxruntime session            ``onnx``
:class:`SklearnModel`         fitted classifier (predict_proba / decision_f.)  ``sklearn``
:class:`HFModel`              local sentence-transformers directory + a head   ``text``
:class:`TextEncoderModel`     any text encoder (``embed``) + a head            --
:class:`CallableModel`        any function ``inputs -> logits``                --
:class:`PrecomputedModel`     saved logits; inputs are row indices             --
:class:`RemoteModel`          a model behind an Open Inference Protocol server ``remote``
============================  ===============================================  ===========

:func:`as_model` picks the adapter for an object. Heavy libraries are imported only when an
adapter that needs them is built; a missing one raises
:class:`~cascadekit.errors.MissingDependencyError` naming the pip command.

Examples
--------
>>> import numpy as np
>>> from cascadekit.adapters import as_model
>>> m = as_model(lambda x: np.asarray(x) @ np.eye(2))
>>> type(m).__name__, m(np.ones((3, 2))).shape
('CallableModel', (3, 2))
"""

from __future__ import annotations

import builtins
import os
import sys
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError
from ._base import ModelAdapter, n_inputs, take, take_slice
from .callable import CallableModel
from .hf import HFModel, SentenceTransformerEncoder, TextEncoderModel, bundled_model_dir
from .onnx import ExportMismatchError, OnnxModel, export_onnx
from .precomputed import PrecomputedModel
from .remote import RemoteModel
from .sklearn import SklearnModel, align_classes
from .torch import TorchModel

__all__ = [
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
]


@runtime_checkable
class Model(Protocol):
    """What a cascade stage needs from a live model.

    ``__call__(inputs) -> ndarray of shape (n_inputs, n_classes)``: float logits (raw,
    pre-softmax scores), one row per input in order. Optional attributes, read with
    ``getattr``: ``batch_size`` (int or None: largest batch per call), ``n_classes`` (int) and
    ``name`` (str).
    """

    def __call__(self, inputs: Any) -> NDArray[np.floating[Any]]: ...


def _is_instance(obj: Any, module: str, attr_path: str) -> bool:
    """isinstance against a class of an already-imported module (never imports it)."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    cls: Any = mod
    for part in attr_path.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            return False
    return isinstance(obj, cls)


def as_model(obj: Any, **kwargs: Any) -> ModelAdapter:
    """Wrap ``obj`` in the adapter that fits it; adapters are returned unchanged.

    Dispatch, in order: a cascadekit adapter; a ``torch.nn.Module`` (:class:`TorchModel`); an
    onnxruntime ``InferenceSession`` or a path to an ``.onnx`` file (:class:`OnnxModel`); a
    2-D numpy array of saved logits (:class:`PrecomputedModel`); an object with
    ``predict_proba`` or ``decision_function`` (:class:`SklearnModel`); any other callable
    (:class:`CallableModel`). ``kwargs`` go to the adapter's constructor.

    Raises
    ------
    ParameterError
        For anything else, saying what is supported.

    Examples
    --------
    >>> as_model(3)
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Cannot use an object of type int as a model. ...
    """
    if isinstance(obj, ModelAdapter):
        if kwargs:
            raise ParameterError(
                f"{type(obj).__name__} is already an adapter; set its options on it directly "
                f"instead of passing {sorted(kwargs)}."
            )
        return obj
    if _is_instance(obj, "torch", "nn.Module"):
        return TorchModel(obj, **kwargs)
    if _is_instance(obj, "onnxruntime", "InferenceSession"):
        return OnnxModel(obj, **kwargs)
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if str(path).endswith(".onnx"):
            return OnnxModel(path, **kwargs)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "modules.json")):
            raise ParameterError(
                f"{str(path)!r} looks like a sentence-transformers directory; it needs a head "
                "that maps embeddings to logits: HFModel(path, head=...)."
            )
        raise ParameterError(
            f"Cannot load a model from {str(path)!r}: only .onnx files are loaded from a path. "
            "Load the model yourself and pass the object (torch module, estimator, function)."
        )
    if isinstance(obj, np.ndarray):
        if obj.ndim == 2:
            return PrecomputedModel(obj, **kwargs)
        raise ParameterError(
            f"A numpy array is taken as saved logits of shape (n_samples, n_classes); got shape "
            f"{obj.shape}."
        )
    if hasattr(obj, "predict_proba") or hasattr(obj, "decision_function"):
        return SklearnModel(obj, **kwargs)
    if hasattr(obj, "fit") and hasattr(obj, "predict"):
        return SklearnModel(obj, **kwargs)  # raises: no predict_proba / decision_function
    if builtins.callable(obj):  # the submodule `callable` shadows the builtin here
        return CallableModel(obj, **kwargs)
    raise ParameterError(
        f"Cannot use an object of type {type(obj).__name__} as a model. Pass a torch.nn.Module, "
        "an onnxruntime.InferenceSession or .onnx path, a fitted scikit-learn classifier, a "
        "function inputs -> logits, saved logits (2-D array), or a cascadekit.adapters adapter."
    )
