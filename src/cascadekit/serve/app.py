"""FastAPI front end of the cascade server: a thin layer over :class:`InferenceService`.

:func:`create_app` builds a new app (no module-level state): the Open Inference Protocol v2
endpoints, the admin threshold knob, ``/metrics``, a request body size limit, ``{"error": ...}``
bodies for every error, start-up warm-up in the lifespan and a graceful drain on shutdown.
:func:`run` serves an app with uvicorn, on 127.0.0.1 by default.

Request bodies are size-checked early (the declared ``Content-Length``, then a running count,
then the decompressed size: 413), must arrive within ``body_timeout`` (408) and be JSON or
``application/octet-stream`` (else 415; a request without a ``Content-Type``, as tritonclient
sends them, is read as JSON). A browser's cross-origin POST/PUT (an ``Origin`` that is not the
``Host``) gets 403, and with ``trusted_hosts`` set, other ``Host`` headers get 400.

=======  =========================================  ==========================================
method   path                                       answer
=======  =========================================  ==========================================
GET      /v2/health/live                            200 ``{"live": true}``
GET      /v2/health/ready                           200, or 503 until every model is warmed up
GET      /v2                                        server metadata
GET      /v2/models/{name}[/versions/{v}]           model metadata (inputs, outputs, stages)
GET      /v2/models/{name}[/versions/{v}]/ready     200 or 503
POST     /v2/models/{name}[/versions/{v}]/infer     inference (JSON or binary tensor data)
PUT      /admin/models/{name}/thresholds            ``{"thresholds": [...]}``, bearer token
GET      /metrics                                   Prometheus text format
=======  =========================================  ==========================================

Examples
--------
>>> import numpy as np
>>> from cascadekit import Cascade
>>> cascade = Cascade.from_models([lambda x: x, lambda x: 2 * x], score="margin",
...                               thresholds=[0.5])
>>> app = create_app(cascade, name="toy", input_spec=TensorSpec("x", ("FP32",), (-1, 3)))
>>> sorted(r.path for r in app.routes if r.path.startswith("/v2/models/{name}"))[:2]
['/v2/models/{name}', '/v2/models/{name}/infer']
"""

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from .._optional import require
from ..cascade import Cascade
from ..oip import (
    DATATYPES,
    HEADER_LENGTH,
    BadRequestError,
    ModelNotFoundError,
    ProtocolError,
    TensorSpec,
    encode_error,
)
from .config import ServeConfig
from .metrics import ServeMetrics
from .model import ServedModel
from .service import InferenceService, Reply

__all__ = ["INFER_REQUEST_SCHEMA", "create_app", "run", "uvicorn_config"]

log = logging.getLogger("cascadekit.serve")
#: ``asyncio.timeout`` (Python 3.11+), else None (then ``asyncio.wait_for``).
_TIMEOUT: Any = getattr(asyncio, "timeout", None)
#: Request content types read as a body (others: 415). None: no Content-Type header.
_BODY_TYPES = ("application/json", "application/octet-stream")

_TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
#: JSON Schema of an inference request body (the JSON part), as published in the OpenAPI doc.
INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "threshold": {"type": ["number", "string"]},
                "timeout": {"type": "integer", "minimum": 1},
                "binary_data_output": {"type": "boolean"},
                "probabilities": {"type": "boolean"},
            },
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_SCHEMA},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_THRESHOLDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["thresholds"],
    "properties": {
        "thresholds": {"type": "array", "items": {"type": ["number", "null", "string"]}}
    },
}
_ERROR = {
    "description": "Error",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _ERROR,
    404: _ERROR,
    408: _ERROR,
    413: _ERROR,
    415: _ERROR,
    422: _ERROR,
    503: _ERROR,
    504: _ERROR,
}


class _BodyTooLarge(ProtocolError):
    status = 413


class _BodyTimeout(ProtocolError):
    status = 408


class _ClientGone(ProtocolError):
    status = 499  # nobody reads it: the client closed the connection


def _check_content_type(request: Any) -> None:
    """415 unless the body is JSON or octet-stream (or untyped, as tritonclient sends it)."""
    raw = request.headers.get("content-type")
    if raw is None:
        return
    media = raw.split(";", 1)[0].strip().lower()
    if media in _BODY_TYPES or media.endswith("+json"):
        return
    raise ProtocolError(
        f"Expected Content-Type application/json (or application/octet-stream with the "
        f"{HEADER_LENGTH} header); got {raw[:60]!r}. Set the header, e.g. curl -H "
        "'Content-Type: application/json'.",
        415,
    )


async def _read_body(request: Any, limit: int, timeout: float | None = None) -> bytes:
    """The request body, refusing more than ``limit`` bytes (also after decompression) and a
    body that takes longer than ``timeout`` seconds to arrive."""
    declared = request.headers.get("content-length")
    too_big = (
        f"The request body exceeds the limit of {limit} bytes; send fewer inputs per request "
        "or use the binary tensor extension."
    )
    if declared is not None:
        declared = declared.strip()
        if not declared.isdigit() or len(declared) > 18:
            if declared.isdigit():
                raise _BodyTooLarge(too_big)
            raise BadRequestError(
                f"Expected Content-Length to be an integer; got {declared[:30]!r}."
            )
        if int(declared) > limit:
            raise _BodyTooLarge(too_big)
    from starlette.requests import ClientDisconnect

    async def receive() -> list[bytes]:
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge(too_big)
            chunks.append(chunk)
        return chunks

    try:
        if timeout is not None and _TIMEOUT is not None:  # a timer, not wait_for's extra task
            async with _TIMEOUT(timeout):
                chunks = await receive()
        else:
            chunks = await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        raise _BodyTimeout(
            f"The request body did not arrive within {timeout:g} s; send it at once."
        ) from None
    except ClientDisconnect:
        log.debug("client %s disconnected while sending its body", request.client)
        raise _ClientGone("The client disconnected before sending its whole body.") from None
    body = b"".join(chunks)
    encoding = (request.headers.get("content-encoding") or "identity").lower()
    if encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        d = zlib.decompressobj(wbits)
        try:
            body = d.decompress(body, limit + 1)
        except zlib.error as exc:
            raise BadRequestError(
                f"The body is declared {encoding}-compressed but does not decompress: {exc}."
            ) from exc
        if len(body) > limit or d.unconsumed_tail:
            raise _BodyTooLarge(too_big)
    elif encoding != "identity":
        raise BadRequestError(f"Expected Content-Encoding gzip, deflate or none; got {encoding!r}.")
    return body


def create_app(
    cascade: Cascade | ServedModel | Sequence[ServedModel] | InferenceService,
    config: ServeConfig | None = None,
    *,
    name: str = "cascade",
    input_spec: TensorSpec | None = None,
) -> Any:
    """Build a FastAPI app serving a cascade (a new app, service and metrics registry per call).

    Parameters
    ----------
    cascade : Cascade, ServedModel, sequence of ServedModel, or InferenceService
        What to serve. A bare :class:`~cascadekit.Cascade` is served as model ``name`` with
        input ``input_spec``.
    config : ServeConfig, optional
    name : str, default="cascade"
        Model name for a bare cascade.
    input_spec : TensorSpec, optional
        Input of a bare cascade; defaults to ``input``, FP32, shape ``[-1, -1]``.

    Returns
    -------
    fastapi.FastAPI
        ``app.state.service`` is the :class:`InferenceService`. The lifespan starts it (warm-up)
        and drains it on shutdown.
    """
    fastapi = require("fastapi", "serve", "The cascadekit server")
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    config = config or ServeConfig()
    if isinstance(cascade, InferenceService):
        service = cascade
    else:
        if isinstance(cascade, Cascade):
            served: ServedModel | Sequence[ServedModel] = ServedModel(
                name, cascade, input_spec or TensorSpec("input", ("FP32",), (-1, -1))
            )
        else:
            served = cascade
        service = InferenceService(served, config, ServeMetrics())

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    docs: dict[str, Any] = (
        {}
        if config.docs
        else {
            "docs_url": None,
            "redoc_url": None,
            "openapi_url": None,
        }
    )
    app = fastapi.FastAPI(
        title="cascadekit inference server",
        version=service.server_metadata()["version"],
        description="A model cascade behind the Open Inference Protocol (KServe v2).",
        lifespan=lifespan,
        **docs,
    )
    app.state.service = service
    app.add_middleware(_HostGuard, hosts=config.trusted_hosts)
    limit = config.max_body_bytes
    body_timeout = config.body_timeout

    def reply(r: Reply) -> Any:
        headers = {k: v for k, v in r.headers.items() if k != "content-type"}
        return Response(r.body, r.status, headers=headers, media_type=r.headers.get("content-type"))

    def error(exc: ProtocolError) -> Any:
        return reply(Reply.error(exc, service.config.retry_after))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: Any) -> Any:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = (
                f"No endpoint {request.method} {request.url.path}. The API is under /v2 "
                "(GET /v2 for the server, GET /v2/models/{name} for a model)."
            )
        elif exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}."
        return JSONResponse({"error": detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Any, exc: Any) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": f"Invalid request at {loc or 'body'}: {first.get('msg', 'invalid')}."},
            400,
        )

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Any, exc: ProtocolError) -> Any:
        return error(exc)

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> Any:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"], responses={503: _ERROR})
    async def ready() -> Any:
        if service.is_ready():
            return {"ready": True}
        return JSONResponse(
            {
                "ready": False,
                "error": "The server is not ready: still warming up, draining, or "
                "a model's first stage is failing.",
            },
            503,
            headers={"retry-after": str(max(1, int(service.config.retry_after)))},
        )

    @app.get("/v2", tags=["metadata"])
    async def server_meta() -> Any:
        return service.server_metadata()

    @app.get("/v2/models/{name}", tags=["metadata"], responses={404: _ERROR})
    async def model_meta(name: str) -> Any:
        return service.model_metadata(name)

    @app.get("/v2/models/{name}/versions/{version}", tags=["metadata"], responses={404: _ERROR})
    async def model_meta_version(name: str, version: str) -> Any:
        return service.model_metadata(name, version)

    def model_ready(name: str, version: str | None) -> Any:
        service.model_metadata(name, version)  # 404 for unknown models
        if service.is_ready(name):
            return {"name": name, "ready": True}
        return JSONResponse(
            {"name": name, "ready": False, "error": f"Model {name!r} is not ready."}, 503
        )

    @app.get("/v2/models/{name}/ready", tags=["health"], responses={404: _ERROR, 503: _ERROR})
    async def model_ready_default(name: str) -> Any:
        return model_ready(name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}/ready",
        tags=["health"],
        responses={404: _ERROR, 503: _ERROR},
    )
    async def model_ready_version(name: str, version: str) -> Any:
        return model_ready(name, version)

    infer_extra = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": INFER_REQUEST_SCHEMA}},
        }
    }

    async def do_infer(request: Any, name: str, version: str | None) -> Any:
        if name not in service.names:
            raise ModelNotFoundError(
                f"Unknown model {name!r}; this server serves {', '.join(map(repr, service.names))}."
            )
        _check_content_type(request)
        body = await _read_body(request, limit, body_timeout)
        r = await service.handle_infer(
            name,
            body,
            request.headers.get(HEADER_LENGTH),
            version,
            request.headers.get("authorization"),
        )
        return reply(r)

    @app.post(
        "/v2/models/{name}/infer",
        tags=["inference"],
        openapi_extra=infer_extra,
        responses=_INFER_RESPONSES,
    )
    async def infer(request: Request, name: str) -> Any:
        return await do_infer(request, name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        tags=["inference"],
        openapi_extra=infer_extra,
        responses=_INFER_RESPONSES,
    )
    async def infer_version(request: Request, name: str, version: str) -> Any:
        return await do_infer(request, name, version)

    @app.put(
        "/admin/models/{name}/thresholds",
        tags=["admin"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _THRESHOLDS_SCHEMA}},
            }
        },
        responses={400: _ERROR, 401: _ERROR, 403: _ERROR, 404: _ERROR, 415: _ERROR},
    )
    async def set_thresholds(request: Request, name: str) -> Any:
        _check_content_type(request)
        body = await _read_body(request, 64 * 1024, body_timeout)
        client = None if request.client is None else f"{request.client.host}"
        return reply(
            service.handle_set_thresholds(name, body, request.headers.get("authorization"), client)
        )

    @app.get("/v2/models/{name}/monitor", tags=["monitoring"])
    async def monitor(name: str) -> Any:
        return reply(service.handle_monitor(name))

    @app.get("/metrics", tags=["metrics"])
    async def metrics() -> Any:
        data, content_type = service.metrics.render()
        return Response(data, media_type=content_type)

    return app


class _HostGuard:
    """ASGI middleware: 400 for a ``Host`` not in ``hosts`` (when given), 403 for a browser's
    cross-origin POST/PUT/DELETE (an ``Origin`` header whose host is not the ``Host``)."""

    def __init__(self, app: Any, hosts: Sequence[str] | None = None) -> None:
        self.app = app
        self.hosts = None if hosts is None else {h.lower() for h in hosts}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        status, message = 0, ""
        if self.hosts is not None and _hostname(host) not in self.hosts:
            status = 400
            message = (
                f"Host {host[:80]!r} is not served here; expected one of "
                f"{', '.join(sorted(self.hosts))} (ServeConfig.trusted_hosts)."
            )
        origin = headers.get("origin")
        if (
            not status
            and origin is not None
            and scope["method"] not in ("GET", "HEAD", "OPTIONS")
            and origin.partition("://")[2].lower() != host.lower()
        ):
            status = 403
            message = (
                f"Cross-origin requests are refused (Origin {origin[:80]!r}, Host {host[:80]!r}). "
                "Call the API from a server, not from a web page on another site."
            )
        if not status:
            await self.app(scope, receive, send)
            return
        body = encode_error(message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _hostname(host: str) -> str:
    """``Host`` header without the port (IPv6 literals keep their brackets off)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def uvicorn_config(
    app: Any, config: ServeConfig | None = None, *, log_level: str = "info", workers: int = 1
) -> Any:
    """The ``uvicorn.Config`` :func:`run` serves ``app`` with (host, port, time-outs, limits).

    With ``workers`` > 1, ``app`` is the import string of a factory that builds each worker's
    app (see :func:`cascadekit.serve.workers.run_workers`).

    Examples
    --------
    >>> from cascadekit.serve import ServeConfig
    >>> uvicorn_config(object(), ServeConfig(limit_concurrency=8)).limit_concurrency
    8
    """
    uvicorn = require("uvicorn", "serve", "The cascadekit server")
    config = config or ServeConfig()
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(max(1, config.drain_timeout)),
        timeout_keep_alive=max(1, round(config.keep_alive_timeout)),
        limit_concurrency=config.limit_concurrency,
        access_log=False,
        workers=workers,
        factory=isinstance(app, str),
        # a worker loading its models answers the supervisor's pings late on a busy machine
        **({"timeout_worker_healthcheck": 120} if workers > 1 else {}),
    )


def run(app: Any, config: ServeConfig | None = None, *, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn on ``config.host:config.port`` (127.0.0.1:8000 by default).

    On SIGINT/SIGTERM uvicorn stops accepting connections, waits up to
    ``config.drain_timeout`` seconds for in-flight requests, then the lifespan drains the
    service and stops its batchers (a stage that hangs is abandoned after as long again).
    """
    uvicorn = require("uvicorn", "serve", "The cascadekit server")
    uvicorn.Server(uvicorn_config(app, config, log_level=log_level)).run()
