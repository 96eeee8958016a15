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

from ._base import ModelAdapter, n_inputs, take, take_slice
from .callable import CallableModel
from .dispatch import Model, as_model
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
