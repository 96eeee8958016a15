"""Protocol errors: each carries the HTTP status a server answers with."""

from __future__ import annotations

from ..errors import CascadeError

__all__ = [
    "BadRequestError",
    "DeadlineExceededError",
    "InputRejectedError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "OverloadedError",
    "ProtocolError",
]


class ProtocolError(CascadeError):
    """A request the server answers with an error; ``status`` is the HTTP status code."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequestError(ProtocolError):
    """Malformed or invalid request (HTTP 400)."""

    status = 400


class InputRejectedError(ProtocolError):
    """The model could not process this request's inputs, though it serves others (HTTP 422)."""

    status = 422


class ModelNotFoundError(ProtocolError):
    """No model of that name (or version) is served (HTTP 404)."""

    status = 404


class OverloadedError(ProtocolError):
    """A queue is full or the server is draining (HTTP 503, with ``Retry-After``)."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelNotReadyError(OverloadedError):
    """The model is not loaded, not warmed up, or its first stage is failing (HTTP 503)."""


class DeadlineExceededError(ProtocolError):
    """The request's deadline passed before its first stage answered (HTTP 504)."""

    status = 504
