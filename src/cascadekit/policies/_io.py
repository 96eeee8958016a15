"""Saving learned policies as router files: a JSON router naming an ``.npz`` sidecar.

The router JSON (schema ``schemas/router.schema.json``) gets ``"score": "learned"`` and a
``"policy"`` object: the routing graph (a chain or a DAG), ``lam``, the classifier, how the
features are built from each node's logits, and the sidecar's file name (relative to the
router file) with its SHA-256. The sidecar holds only arrays (``np.load(allow_pickle=False)``)
for the built-in classifiers. A custom scikit-learn classifier is stored with ``skops`` when
it is installed, else only with ``allow_pickle=True`` (a pickle runs code when loaded: load
such files only from sources you trust).

Loading a router file runs no code it names:

- sidecar names are plain file names in the router file's folder (no ``/``, ``..`` or absolute
  paths), and each sidecar's SHA-256 is recorded in the router and checked before it is read;
- a ``.skops`` objects file is loaded only when every type it names is on an allow-list:
  skops' own list of safe types (scikit-learn estimators, numpy and scipy containers) plus
  the names passed as ``trusted_types``. Anything else (a function such as ``os.system``, an
  unknown class, scikit-learn's ``Tree`` whose raw node indices are not bounds-checked) is
  refused with :class:`~cascadekit.errors.RouterFileError` before any object is built;
- a pickle is read only with ``allow_pickle=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..data.cache import atomic_write_bytes, atomic_write_npz
from ..errors import (
    DataNotFoundError,
    InputShapeError,
    MissingDependencyError,
    ParameterError,
    RouterFileError,
)
from ..router import FORMAT, FORMAT_VERSION, SCORE_FORM, decode_threshold, encode_threshold
from ._classifiers import Decider
from ._core import LearnedPolicy, PolicyRoute
from ._graph import PolicyGraph
from .features import logit_features, stack_features

__all__ = ["FeatureSpec", "PolicyRouter", "load_policy_router", "save_policy_router"]


@dataclass(frozen=True)
class FeatureSpec:
    """How a node's policy features are built: logit features, then extra columns.

    Parameters
    ----------
    temperature, top_k, class_probs : see :func:`logit_features`.
    n_extra : int, default=0
        Extra feature columns appended after the logit features of node 0 (committee,
        hidden activations, ...); they must be given at routing time (``--features``). Later
        nodes use their logit features only.

    Examples
    --------
    >>> FeatureSpec().build(np.array([[2.0, 0.0]])).shape
    (1, 9)
    """

    temperature: float = 1.0
    top_k: int = 3
    class_probs: bool = True
    n_extra: int = 0

    def build(self, logits: ArrayLike, extra: ArrayLike | None = None) -> NDArray[np.float64]:
        """Features of one node from its logits (and the extra columns)."""
        f = logit_features(
            logits, temperature=self.temperature, top_k=self.top_k, class_probs=self.class_probs
        )
        if self.n_extra:
            if extra is None:
                raise ParameterError(
                    f"This policy also needs {self.n_extra} extra feature columns (committee, "
                    "hidden activations, ...); got none. Pass them (cascadekit route "
                    "--features F.npy)."
                )
            e = np.asarray(extra, dtype=np.float64)
            e = e[:, None] if e.ndim == 1 else e
            if e.ndim != 2 or e.shape[1] != self.n_extra:
                raise InputShapeError(
                    f"Expected extra features of shape (n_samples, {self.n_extra}); got "
                    f"{e.shape}. Build them as for calibration."
                )
            return stack_features(f, e)
        return f

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": "logits",
            "temperature": self.temperature,
            "top_k": self.top_k,
            "class_probs": self.class_probs,
            "n_extra": self.n_extra,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            float(doc.get("temperature", 1.0)),
            int(doc.get("top_k", 3)),
            bool(doc.get("class_probs", True)),
            int(doc.get("n_extra", 0)),
        )


@dataclass
class PolicyRouter:
    """A learned policy with the recipe of its features: routes saved logits.

    Attributes
    ----------
    policy : LearnedPolicy
    spec : FeatureSpec
    calibration : dict
        How its thresholds were chosen, for the record.
    """

    policy: LearnedPolicy
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    calibration: dict[str, Any] = field(default_factory=dict)
    stage_names: list[str] | None = None

    @property
    def graph(self) -> PolicyGraph:
        """The routing graph."""
        return self.policy.graph_

    def features(
        self, outputs: Sequence[ArrayLike], extra: ArrayLike | None = None
    ) -> list[NDArray[np.float64] | None]:
        """Per-node features from per-node logits (the extra columns go to node 0)."""
        g = self.graph
        if len(outputs) != g.n_nodes:
            raise RouterFileError(
                f"This router routes {g.n_nodes} nodes; got outputs for {len(outputs)}. Pass "
                "one file per node in the order the router was calibrated."
            )
        feats: list[NDArray[np.float64] | None] = []
        later = replace(self.spec, n_extra=0)  # the extra columns are node 0's
        for k in range(g.n_nodes):
            if g.terminal[k]:
                feats.append(None)
            else:
                spec = self.spec if k == 0 else later
                feats.append(spec.build(outputs[k], extra if k == 0 else None))
        return feats

    def route(self, outputs: Sequence[ArrayLike], extra: ArrayLike | None = None) -> PolicyRoute:
        """Route saved per-node logits (the last node may be labels only)."""
        return self.policy.route(self.features(outputs, extra))

    def predict(
        self, outputs: Sequence[ArrayLike], extra: ArrayLike | None = None
    ) -> tuple[PolicyRoute, NDArray[np.int64]]:
        """The route and each input's prediction (the answering node's argmax)."""
        r = self.route(outputs, extra)
        preds = np.vstack(
            [
                np.asarray(o) if np.asarray(o).ndim == 1 else np.argmax(np.asarray(o), axis=1)
                for o in outputs
            ]
        )
        return r, r.predictions(preds)


def _decider_arrays(policy: LearnedPolicy) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    kinds: list[list[dict[str, Any]]] = []
    arrays: dict[str, Any] = {}
    objects: dict[str, Any] = {}
    for k, lst in enumerate(policy.deciders_):
        row = []
        for j, d in enumerate(lst):
            tag = f"n{k}_d{j}"
            row.append({"kind": d.kind, "key": tag})
            if d.kind == "estimator":
                objects[tag] = d.estimator
            else:
                for name, a in d.arrays.items():
                    arrays[f"{tag}/{name}"] = np.asarray(a)
        kinds.append(row)
    return kinds, {"arrays": arrays, "objects": objects}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sidecar(base: Path, spec_doc: Mapping[str, Any], key: str, sha_key: str) -> Path:
    """The sidecar named by ``spec_doc[key]``: a plain name next to the router, hash-checked."""
    name = spec_doc.get(key)
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or Path(name).is_absolute()
        or Path(name).name != name
    ):
        raise RouterFileError(
            f'Expected the router\'s "policy.{key}" to be a plain file name next to the router '
            f"file (no folders, '..' or absolute paths); got {name!r}. Keep the router JSON and "
            "its sidecar files in one folder and re-save the router."
        )
    path = base / name
    if not path.is_file():
        raise DataNotFoundError(
            f"The router names its file {name!r}, which is not next to it in {str(base)!r}. "
            "Keep the router JSON and its sidecar files together."
        )
    want = spec_doc.get(sha_key)
    if not isinstance(want, str) or len(want) != 64:
        raise RouterFileError(
            f'Expected the router to record the SHA-256 of {name!r} in "policy.{sha_key}" (64 '
            f"hex digits); got {want!r}. Re-save the router with this version of cascadekit."
        )
    if _sha256(path) != want.lower():
        raise RouterFileError(
            f"The file {name!r} does not match the router (SHA-256 differs). Re-save the "
            "router; do not mix files of different routers."
        )
    return path


def _load_skops(path: Path, trusted_types: Sequence[str]) -> dict[str, Any]:
    """Objects of a ``.skops`` file whose every type is on the allow-list; refuse the rest."""
    try:
        from skops.io import get_untrusted_types, load
    except ImportError as exc:
        raise MissingDependencyError(
            f"This router stores a custom classifier in {path.name}, which needs skops: "
            'pip install skops (or "cascadekit[dev]").'
        ) from exc
    try:
        # reads the file's schema only: no module is imported and no object is built
        untrusted = get_untrusted_types(file=path)
    except Exception as exc:
        raise RouterFileError(
            f"{path.name} is not a readable skops file ({type(exc).__name__}: {exc}). Re-save "
            "the router."
        ) from exc
    refused = sorted(set(untrusted) - set(trusted_types))
    if refused:
        raise RouterFileError(
            f"{path.name} names type(s) that are not on the allow-list of safe types: "
            f"{', '.join(refused)}. Loading them could run code, so nothing was loaded. Use a "
            "built-in classifier ('logistic' or 'hgb', stored as plain arrays), or, only if you "
            "reviewed the file and trust where it came from, pass "
            "trusted_types=[...] with those names."
        )
    objects = load(path, trusted=list(trusted_types) or None)
    if not isinstance(objects, dict):
        raise RouterFileError(
            f"Expected {path.name} to hold a mapping of classifiers; got "
            f"{type(objects).__name__}. Re-save the router."
        )
    return objects


def save_policy_router(
    router: PolicyRouter,
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
) -> Path:
    """Write the router JSON at ``path`` and its parameters next to it (``<stem>.policy.npz``).

    Returns the sidecar's path. See the module docstring for custom classifiers.
    """
    p = Path(path)
    pol = router.policy
    pol.check_fitted()
    kinds, parts = _decider_arrays(pol)
    sidecar = p.with_name(p.stem + ".policy.npz")
    atomic_write_npz(sidecar, parts["arrays"] or {"empty": np.zeros(0)})
    objects_file = None
    if parts["objects"]:
        try:
            from skops.io import dump as skops_dump
        except ImportError:
            skops_dump = None
        if skops_dump is not None:
            objects_file = p.with_name(p.stem + ".policy.skops")
            skops_dump(parts["objects"], objects_file)
        elif allow_pickle:
            objects_file = p.with_name(p.stem + ".policy.pkl")
            atomic_write_bytes(objects_file, pickle.dumps(parts["objects"]))
        else:
            raise ParameterError(
                "This policy uses a custom classifier, which can only be saved as a pickle "
                "(skops is not installed). Install skops, use classifier='logistic' or 'hgb', "
                "or pass allow_pickle=True (loading a pickle runs code: only load files you "
                "trust)."
            )
    g = pol.graph_
    objects_sha = None if objects_file is None else _sha256(objects_file)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "score": "learned",
        "score_form": SCORE_FORM,
        "temperature": router.spec.temperature,
        "thresholds": [
            encode_threshold(float(pol.thresholds_[k]))
            for k in range(g.n_nodes)
            if not g.terminal[k]
        ],
        "costs": list(g.costs),
        "stage_names": router.stage_names or list(g.names),
        "calibration": router.calibration,
        "policy": {
            "kind": "weighted-binary-classification",
            "lam": float(pol.lam),
            "classifier": pol.classifier if isinstance(pol.classifier, str) else "estimator",
            "graph": g.to_dict(),
            "features": router.spec.to_dict(),
            "n_features": pol.n_features_,
            "deciders": kinds,
            "file": sidecar.name,
            "sha256": _sha256(sidecar),
            "objects_file": None if objects_file is None else objects_file.name,
            "objects_sha256": objects_sha,
        },
    }
    p.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return sidecar


def load_policy_router(
    doc_or_path: Mapping[str, Any] | str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    *,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
) -> PolicyRouter:
    """Read a learned router (its JSON and its sidecar files).

    Parameters
    ----------
    doc_or_path : mapping or path
        The router document, or the router JSON file's path.
    base_dir : path, optional
        Where the sidecars are looked for when a document (not a path) is given; defaults to
        the current folder.
    allow_pickle : bool, default=False
        Read a custom classifier saved as a pickle (loading a pickle runs code).
    trusted_types : sequence of str, default=()
        Fully qualified type names a ``.skops`` objects file may name beyond skops' own safe
        types (e.g. ``"sklearn.tree._tree.Tree"``). Add only types you reviewed.

    Raises
    ------
    RouterFileError
        A sidecar name that leaves the router's folder, a missing or wrong SHA-256, an objects
        file that names a type off the allow-list, a pickle without ``allow_pickle``.
    DataNotFoundError
        The router file or a sidecar is missing.
    """
    if isinstance(doc_or_path, Mapping):
        doc = dict(doc_or_path)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        p = Path(doc_or_path)
        if not p.exists():
            raise DataNotFoundError(f"Expected a router file at {str(p)!r}; nothing is there.")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RouterFileError(
                f"Expected {str(p)!r} to be a router JSON file; it is not valid JSON ({exc})."
            ) from exc
        if not isinstance(doc, dict):
            raise RouterFileError(f"Expected {str(p)!r} to hold a JSON object (a router).")
        base = p.parent
    spec_doc = doc.get("policy")
    if not isinstance(spec_doc, Mapping):
        raise RouterFileError('Expected a learned router with a "policy" object; got none.')
    side = _sidecar(base, spec_doc, "file", "sha256")
    objects: dict[str, Any] = {}
    if spec_doc.get("objects_file"):
        ofile = _sidecar(base, spec_doc, "objects_file", "objects_sha256")
        if ofile.suffix == ".skops":
            objects = _load_skops(ofile, trusted_types)
        elif not allow_pickle:
            raise RouterFileError(
                f"This router stores a custom classifier as a pickle ({ofile.name}); loading it "
                "runs code. Pass allow_pickle=True only if you trust where the file came from."
            )
        else:
            objects = pickle.loads(ofile.read_bytes())
    graph = PolicyGraph.from_dict(spec_doc["graph"])
    with np.load(side, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    deciders: list[list[Decider]] = []
    for row in spec_doc["deciders"]:
        lst = []
        for d in row:
            if d["kind"] == "estimator":
                lst.append(Decider("estimator", estimator=objects[d["key"]]))
            else:
                pre = d["key"] + "/"
                lst.append(
                    Decider(
                        d["kind"],
                        {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)},
                    )
                )
        deciders.append(lst)
    pol = LearnedPolicy(graph, lam=float(spec_doc["lam"]), classifier=spec_doc["classifier"])
    pol.graph_ = graph
    pol.deciders_ = deciders
    pol.n_features_ = list(spec_doc["n_features"])
    ths = [decode_threshold(t) for t in doc.get("thresholds") or []]
    it = iter(ths)
    pol.thresholds_ = [0.0 if graph.terminal[k] else next(it, 0.0) for k in range(graph.n_nodes)]
    pol.train_objective_ = float("nan")
    return PolicyRouter(
        policy=pol,
        spec=FeatureSpec.from_dict(spec_doc.get("features") or {}),
        calibration=dict(doc.get("calibration") or {}),
        stage_names=doc.get("stage_names"),
    )
