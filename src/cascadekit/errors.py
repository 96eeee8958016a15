"""Errors raised by cascadekit.

Every error a user can trigger is a :class:`CascadeError`. Messages follow one rule: say what was
expected, what was got, and what to do. The CLI prints the message without a traceback and exits
non-zero; the HTTP server maps these errors to ``400 {"error": "..."}``.

Examples
--------
>>> from cascadekit.errors import CascadeError, InputShapeError
>>> issubclass(InputShapeError, CascadeError) and issubclass(CascadeError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "AdminRequestError",
    "CascadeError",
    "ClassCountError",
    "DataNotFoundError",
    "EmptyInputError",
    "InfeasibleTargetError",
    "InputShapeError",
    "InsufficientDataError",
    "LabelError",
    "MissingDependencyError",
    "MonitorLogError",
    "NonFiniteError",
    "NotCalibratedError",
    "ParameterError",
    "RouterFileError",
    "SampleCountError",
    "ScoreInputError",
    "StageError",
    "StageUnavailableError",
    "ThresholdRangeWarning",
    "TrainingError",
    "UnknownNameError",
]


class CascadeError(ValueError):
    """Base class of every error a user of cascadekit can trigger."""


class InputShapeError(CascadeError):
    """An array has the wrong number of dimensions or the wrong shape."""


class EmptyInputError(CascadeError):
    """An array that must hold samples holds none."""


class NonFiniteError(CascadeError):
    """Logits, scores or costs contain NaN or infinity."""


class ClassCountError(CascadeError):
    """Stages or labels disagree on the number of classes."""


class SampleCountError(CascadeError):
    """Stages or labels disagree on the number of samples."""


class LabelError(CascadeError):
    """Labels are not integers in ``[0, n_classes)``."""


class ScoreInputError(CascadeError):
    """A score was asked of outputs it is meaningless on (energy of probabilities)."""


class UnknownNameError(CascadeError):
    """A name (score, model, option) is not one cascadekit knows."""


class ParameterError(CascadeError):
    """A parameter is outside its valid range (negative cost, epsilon not in (0, 1), ...)."""


class NotCalibratedError(CascadeError):
    """A cascade was asked to route before it has thresholds."""


class InfeasibleTargetError(CascadeError):
    """No threshold reaches the requested target; ``best`` holds the best achievable value."""

    def __init__(self, message: str, best: float | None = None) -> None:
        super().__init__(message)
        self.best = best


class InsufficientDataError(CascadeError):
    """Too few calibration samples for the requested guarantee; ``needed`` says how many."""

    def __init__(self, message: str, needed: int | None = None) -> None:
        super().__init__(message)
        self.needed = needed


class RouterFileError(CascadeError):
    """A saved router file is malformed or of an unsupported format version."""


class AdminRequestError(CascadeError):
    """A call to a server's admin API failed (unreachable, refused, or rejected the change)."""


class MonitorLogError(CascadeError):
    """A monitoring log (JSONL) is missing, malformed, or holds too little for the request."""


class DataNotFoundError(CascadeError, FileNotFoundError):
    """A data set or file is not where cascadekit looked; the message names the install command."""


class MissingDependencyError(CascadeError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


class StageError(CascadeError):
    """A model inside a cascade stage failed or returned something unusable; names the stage."""


class StageUnavailableError(StageError):
    """A later stage could not answer in time (timeout, connection lost, overloaded).

    :meth:`cascadekit.Cascade.predict` answers the inputs such a stage should have taken with the
    previous stage's prediction and flags them ``fallback``, instead of failing the call.
    """


class TrainingError(CascadeError):
    """Training a student failed (its loss diverged to NaN or inf); nothing was cached."""


class ThresholdRangeWarning(UserWarning):
    """A finite threshold lies outside the range of the scores it is applied to.

    Every input then goes the same way (all stay at the stage, or all move on), which is
    rarely meant: a threshold on another scale (a probability for a log-odds score), or on
    another score. ``-inf`` and ``+inf`` say "all stay" and "all move on" without a warning.
    The command line prints these warnings as notes.
    """
