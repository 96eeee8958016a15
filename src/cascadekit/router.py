"""Router files: everything needed to route, saved as a small JSON document.

A router file records the score, temperature, thresholds, per-stage costs and names, and the
class maps of a cascade, plus how the thresholds were chosen. ``cascadekit calibrate
--save-router`` writes one; :meth:`Router.load` and ``cascadekit route`` apply it to new saved
logits; the server configuration refers to it. Its JSON Schema is ``schemas/router.schema.json``.

Thresholds are numbers, ``null`` for +inf (every input moves on) or the string ``"-inf"`` (every
input stays).

**Format versions.** Version 2 (written today) stores ``"score_form": "log"``: thresholds of
``max_softmax`` are log-odds of ``p_max`` and those of ``entropy`` are ``-log H``, the forms
:mod:`cascadekit.scores` computes (they keep their resolution where confident inputs live).
Version 1 files stored ``p_max`` and the negative entropy ``-H``; they keep loading, and their
thresholds are converted with :func:`~cascadekit.scores.from_probability_form`, so they route
exactly as before (up to the rounding the new forms remove). ``calibration`` may hold
``numerical_margin``: the distance from the thresholds to the nearest calibration score.

Version 2 also describes the scores of students built for the cascade
(:mod:`cascadekit.training.scores`): ``"deferral"`` (a deferral head's column),
``"agreement"`` (a committee's column) and ``"p_norm_softmax"``, whose ``p`` goes in the
optional ``"score_params": {"p": 2.0}``. Files without ``score_params`` read as before.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from cascadekit.router import Router
>>> r = Router(score="margin", thresholds=[1.5], costs=[1.0, 7.0])
>>> path = os.path.join(tempfile.mkdtemp(), "router.json")
>>> r.save(path)
>>> loaded = Router.load(path)
>>> loaded.thresholds, loaded.score
([1.5], 'margin')
>>> cascade = loaded.to_cascade([np.array([[3.0, 0.0]]), np.array([[0.0, 1.0]])])
>>> cascade.route().predictions
array([0])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike

from ._validation import decode_threshold, encode_threshold
from .cascade import Cascade, Stage
from .errors import DataNotFoundError, RouterFileError
from .scores import ScoreFn, from_probability_form
from .training.scores import resolve_score

if TYPE_CHECKING:
    from .calibration import CalibrationResult

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SCORE_FORM",
    "SUPPORTED_FORMAT_VERSIONS",
    "Router",
    "decode_threshold",
    "encode_threshold",
]

FORMAT = "cascadekit.router"
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = (1, 2)
#: The form of the thresholds in version-2 files (see the module docstring).
SCORE_FORM = "log"


@dataclass
class Router:
    """A saved routing rule for an N-stage cascade.

    Parameters
    ----------
    score : str or callable
        Registered score name (higher = keep on the stage); a score function works in memory
        but cannot be saved.
    thresholds : list of float
        One per non-final stage.
    temperature : float, default=1.0
    costs : list of float, optional
        Cost of each stage; defaults to 1 per stage.
    stage_names : list of str, optional
    class_maps : list, optional
        Per stage, a class map (list of int) or None.
    other_class : list, optional
        Per stage, the "other" column of a specialized student, or None.
    calibration : dict, optional
        How the thresholds were chosen (method, target, epsilon, delta, ...), for the record.
    policy : dict, optional
        For ``score="learned"``: the learned policy's description (routing graph, which may be
        a DAG, features, classifier) and the sidecar file holding its parameters; apply it with
        :func:`cascadekit.policies.load_policy_router`.
    score_params : dict, optional
        Keyword parameters of the score (``{"p": 3.0}`` for ``p_norm_softmax``).
    source : Path, optional
        The file it was loaded from (set by :meth:`load`; a learned policy's parameters are
        read next to it). Not saved.
    """

    score: str | Callable[..., Any]
    thresholds: list[float]
    temperature: float = 1.0
    costs: list[float] | None = None
    stage_names: list[str] | None = None
    class_maps: list[list[int] | None] | None = None
    other_class: list[int | None] | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] | None = None
    score_params: dict[str, float] | None = None
    source: Path | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_calibration(
        cls,
        result: CalibrationResult,
        score: str | Callable[..., Any],
        *,
        temperature: float = 1.0,
        costs: Sequence[float] | None = None,
        stage_names: Sequence[str] | None = None,
        class_maps: Sequence[Sequence[int] | None] | None = None,
        other_class: Sequence[int | None] | None = None,
        score_params: dict[str, float] | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> Router:
        """The routing rule of a calibration result: its thresholds on ``score``.

        ``calibration`` (default: ``result.to_dict()``) is kept for the record.

        Examples
        --------
        >>> import numpy as np
        >>> from cascadekit.calibration import calibrate_outputs
        >>> z = np.array([[3.0, 0.0], [0.5, 0.0], [0.0, 2.0], [0.1, 0.0]])
        >>> res = calibrate_outputs([z, z], np.array([0, 1, 1, 0]), 0.5, score="margin")
        >>> r = Router.from_calibration(res, "margin", costs=[1.0, 5.0])
        >>> r.thresholds, r.to_cascade([z, z]).route().teacher_share
        ([1.25], 0.5)
        """
        ths = [float(t) for t in result.thresholds]
        return cls(
            score=score,
            thresholds=ths,
            temperature=float(temperature),
            costs=None if costs is None else [float(c) for c in costs],
            stage_names=None if stage_names is None else [str(n) for n in stage_names],
            class_maps=None
            if class_maps is None
            else [None if m is None else list(m) for m in class_maps],
            other_class=None if other_class is None else list(other_class),
            calibration=result.to_dict() if calibration is None else dict(calibration),
            score_params=score_params,
        )

    @property
    def stage_score(self) -> str | ScoreFn:
        """What a :class:`~cascadekit.Stage` routes by: the score's name, or for the scores of
        :mod:`cascadekit.training.scores` the score with its ``score_params`` bound."""
        if callable(self.score):
            return self.score
        return resolve_score(self.score, self.score_params)

    @property
    def n_stages(self) -> int:
        """Number of stages (nodes, for a learned policy's graph) the router expects."""
        if self.policy is not None and isinstance(self.policy.get("graph"), dict):
            return len(self.policy["graph"].get("names") or []) or len(self.thresholds) + 1
        return len(self.thresholds) + 1

    def to_cascade(
        self,
        outputs: Sequence[ArrayLike] | None = None,
        *,
        models: Sequence[Any] | None = None,
        classes: ArrayLike | None = None,
    ) -> Cascade:
        """The :class:`~cascadekit.Cascade` this rule describes, over saved outputs or models.

        This is the one way a routing rule becomes a cascade: the CLI, the server's YAML
        config, its Ray Serve backend and :class:`~cascadekit.CascadeClassifier` all call it.
        Every field applies: score (with ``score_params``), temperature, thresholds, costs,
        names, class maps and the "other" gate of a specialized student. A learned policy
        whose graph is a chain and whose features come from the logits alone routes as a
        cascade whose scores are its exit deciders (its parameters are read next to
        :attr:`source`).

        Parameters
        ----------
        outputs : sequence of N arrays, optional
            Saved outputs, one per stage, for :meth:`Cascade.route`.
        models : sequence of N models, optional
            Live models, one per stage, for :meth:`Cascade.predict` (anything
            :func:`cascadekit.adapters.as_model` takes).
        classes : array-like, optional
            Class labels of the results.

        Raises
        ------
        RouterFileError
            Not one output or model per stage, or a learned policy that is not a chain of
            stages fed by their logits.
        """
        n = self.n_stages
        for what, items in (("outputs", outputs), ("models", models)):
            if items is not None and len(items) != n:
                raise RouterFileError(
                    f"This router routes {n} stages; got {what} for {len(items)}. Pass one per "
                    "stage in the order the router was calibrated."
                )
        scores: Sequence[str | ScoreFn]
        if self.policy is not None:
            from .policies import load_policy_router

            base = None if self.source is None else self.source.parent
            scores = load_policy_router(self.to_dict(), base).exit_scores()
        else:
            scores = [self.stage_score] * n
        stages = []
        for k in range(n):
            stages.append(
                Stage(
                    outputs=None if outputs is None else outputs[k],
                    model=None if models is None else models[k],
                    cost=1.0 if self.costs is None else float(self.costs[k]),
                    name=None if self.stage_names is None else self.stage_names[k],
                    score=scores[min(k, len(scores) - 1)],
                    temperature=self.temperature,
                    class_map=None if self.class_maps is None else self.class_maps[k],
                    other_class=None if self.other_class is None else self.other_class[k],
                )
            )
        return Cascade(stages, thresholds=self.thresholds, classes=classes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see ``schemas/router.schema.json``)."""
        if callable(self.score):
            raise RouterFileError(
                f"This router routes by the function {getattr(self.score, '__name__', '?')!r}, "
                "which a router file cannot hold. Register it by name "
                "(cascadekit.scores.register_score) to save the router."
            )
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "score": self.score,
            "score_form": SCORE_FORM,
            "temperature": self.temperature,
            "thresholds": [encode_threshold(t) for t in self.thresholds],
            "costs": self.costs,
            "stage_names": self.stage_names,
            "class_maps": self.class_maps,
            "other_class": self.other_class,
            "calibration": self.calibration,
        }
        if self.score_params:
            doc["score_params"] = dict(self.score_params)
        if self.policy is not None:
            doc["policy"] = self.policy
        return doc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the router as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, doc: Any) -> Router:
        """Validate and read a router document."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RouterFileError(
                f'Expected a cascadekit router document with "format": "{FORMAT}"; got '
                f"{type(doc).__name__} {str(doc)[:80]!r}. Write one with "
                "`cascadekit calibrate ... --save-router router.json`."
            )
        version = doc.get("format_version")
        if isinstance(version, bool) or version not in SUPPORTED_FORMAT_VERSIONS:
            raise RouterFileError(
                f"Expected router format_version in {list(SUPPORTED_FORMAT_VERSIONS)}; got "
                f"{version!r}. Re-create the file with this version of cascadekit "
                "(`cascadekit calibrate ... --save-router`)."
            )
        form = doc.get("score_form", SCORE_FORM if version >= 2 else "probability")
        if form not in (SCORE_FORM, "probability") or (version >= 2 and form != SCORE_FORM):
            raise RouterFileError(
                f'Expected "score_form": "{SCORE_FORM}" in a version-{version} router file; got '
                f"{form!r}. Re-create the file with `cascadekit calibrate ... --save-router`."
            )
        for key in ("score", "thresholds"):
            if key not in doc:
                raise RouterFileError(f"The router document lacks the required field {key!r}.")
        ths = doc["thresholds"]
        if not isinstance(ths, list) or not ths:
            raise RouterFileError(f'Expected "thresholds" to be a non-empty list; got {ths!r}.')
        policy = doc.get("policy")
        if policy is not None and (doc["score"] != "learned" or not isinstance(policy, dict)):
            raise RouterFileError(
                'Expected "policy" only with "score": "learned", as an object; got score '
                f"{doc['score']!r} and policy {type(policy).__name__}."
            )
        params = doc.get("score_params")
        if params is not None and not isinstance(params, dict):
            raise RouterFileError(
                f'Expected "score_params" to be an object such as {{"p": 2.0}}; got '
                f"{type(params).__name__} {params!r}."
            )
        if policy is None:  # unknown names and parameters fail here, not at routing time
            resolve_score(doc["score"], params)
        thresholds = [decode_threshold(v) for v in ths]
        if form == "probability" and policy is None:
            # version 1: p_max and -H thresholds, converted to today's routing forms
            thresholds = [from_probability_form(doc["score"], t) for t in thresholds]
        router = cls(
            score=doc["score"],
            thresholds=thresholds,
            temperature=float(doc.get("temperature", 1.0)),
            costs=doc.get("costs"),
            stage_names=doc.get("stage_names"),
            class_maps=doc.get("class_maps"),
            other_class=doc.get("other_class"),
            calibration=doc.get("calibration") or {},
            policy=policy,
            score_params=None if not params else {str(k): float(v) for k, v in params.items()},
        )
        for name in ("costs", "stage_names", "class_maps", "other_class"):
            val = getattr(router, name)
            if val is not None and len(val) != router.n_stages:
                raise RouterFileError(
                    f"Expected {name!r} to have one entry per stage ({router.n_stages}); got "
                    f"{len(val)}."
                )
        return router

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Router:
        """Read a router file written by :meth:`save`."""
        p = Path(path)
        if not p.exists():
            raise DataNotFoundError(f"Expected a router file at {str(p)!r}; nothing is there.")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RouterFileError(
                f"{str(p)!r} is not valid JSON ({exc}). Re-create it with "
                "`cascadekit calibrate ... --save-router`."
            ) from exc
        router = cls.from_dict(doc)
        router.source = p
        return router
