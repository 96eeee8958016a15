"""gRPC front end of the cascade server: the Open Inference Protocol's ``GRPCInferenceService``.

A thin layer over the same :class:`~cascadekit.serve.service.InferenceService` as the HTTP
app, so both protocols share one set of batchers, thresholds, readiness, drain and metrics: a
request decodes (:mod:`cascadekit.oip.proto`) to the same :class:`~cascadekit.oip.InferRequest`
as an HTTP body, with the same checks and messages, runs through the same
:meth:`~cascadekit.serve.service.InferenceService.infer_request`, and is counted in the same
metrics under the status an HTTP client would have got. ``tritonclient.grpc`` works unchanged.

RPCs: ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata``,
``ModelInfer`` (outputs in ``raw_output_contents``). Errors are gRPC status codes with the HTTP
answer's message (:data:`STATUS_CODES`); a 503 carries a ``retry-after`` trailer. The request
parameters are those of HTTP (``threshold``, ``timeout`` in microseconds, ``probabilities``);
without a ``timeout`` the call's gRPC deadline, when it has one, is the request's deadline. The
admin token goes in an ``authorization: Bearer <token>`` metadata entry.

:func:`add_grpc` makes an app from :func:`~cascadekit.serve.create_app` serve gRPC too, on the
app's event loop (``grpc.aio``): it starts after the warm-up and stops (new calls refused,
in-flight ones given ``drain_timeout`` seconds) before the service drains.
``cascadekit serve --grpc-port PORT`` does this. Needs the ``grpc`` extra (``grpcio``,
``protobuf``).

Examples
--------
>>> STATUS_CODES[404], STATUS_CODES[503]
('NOT_FOUND', 'UNAVAILABLE')
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from .._optional import require
from ..errors import ParameterError
from ..oip import OutputTensor, OverloadedError, ProtocolError
from ..oip.proto import SERVICE, decode_infer_request, encode_infer_response, message
from .service import InferenceService, format_thresholds

__all__ = ["STATUS_CODES", "InferenceServicer", "add_grpc", "start_grpc_server"]

#: uvicorn's start-up log: the gRPC address is printed beside "Uvicorn running on ...".
log = logging.getLogger("uvicorn.error")

#: HTTP status of a :class:`~cascadekit.oip.ProtocolError` -> the gRPC status code answered.
#: 422 (the model could not process these inputs) is INVALID_ARGUMENT: the same call fails
#: again, the inputs must change.
STATUS_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "RESOURCE_EXHAUSTED",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _grpc() -> Any:
    return require("grpc", "grpc", "The gRPC server")


class InferenceServicer:
    """The ``inference.GRPCInferenceService`` RPCs over an :class:`InferenceService`.

    Parameters
    ----------
    service : InferenceService
        Started and stopped by its owner (the HTTP app's lifespan, or the caller).
    """

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def ServerLive(self, request: Any, context: Any) -> Any:
        """Whether the server serves (true until it drains)."""
        return message("ServerLiveResponse")(live=self.service.live)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        """Whether every model is warmed up and the server is not draining."""
        return message("ServerReadyResponse")(ready=self.service.is_ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        """Whether one model is ready (NOT_FOUND for an unknown model or version)."""
        try:
            self.service.model(request.name, request.version or None)
        except ProtocolError as exc:
            await self._abort(context, exc)
        return message("ModelReadyResponse")(ready=self.service.is_ready(request.name))

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        """The server's name, version and protocol extensions."""
        doc = self.service.server_metadata()
        return message("ServerMetadataResponse")(
            name=doc["name"], version=doc["version"], extensions=doc.get("extensions", [])
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        """One model's versions, platform, inputs and outputs (as ``GET /v2/models/{name}``;
        the protocol's message has no field for the stages and thresholds)."""
        try:
            doc = self.service.model_metadata(request.name, request.version or None)
        except ProtocolError as exc:
            await self._abort(context, exc)
        msg = message("ModelMetadataResponse")(
            name=doc["name"], versions=doc.get("versions", []), platform=doc.get("platform", "")
        )
        for key in ("inputs", "outputs"):
            for t in doc[key]:
                getattr(msg, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return msg

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """Run one request through the cascade, as ``POST /v2/models/{name}/infer``."""
        t0 = time.perf_counter()
        service = self.service
        name = request.model_name
        version = request.model_version or None
        metric_name = name if name in service.names else "_unknown"
        try:
            served = service.model(name, version)
            req = decode_infer_request(
                request, specs=[served.input], max_batch=service.config.max_request_inputs
            )
            remaining = context.time_remaining()
            if "timeout" not in req.parameters and remaining is not None:
                req.parameters["timeout"] = max(1, int(remaining * 1e6))
            auth = dict(context.invocation_metadata() or ()).get("authorization")
            result, names = await service.infer_request(
                name, req, version, service.authorized(auth) if auth else False
            )
            reply = encode_infer_response(
                name,
                [OutputTensor(n, result.output(n)) for n in names],
                served.version,
                request_id=req.id,
                parameters={"threshold": format_thresholds(result.thresholds)},
            )
        except Exception as exc:
            error = service.failure(name, exc)
            service.metrics.observe_request(metric_name, error.status, time.perf_counter() - t0)
            await self._abort(context, error)
        service.metrics.observe_request(metric_name, 200, time.perf_counter() - t0)
        return reply

    async def _abort(self, context: Any, exc: ProtocolError) -> NoReturn:
        grpc = _grpc()
        if isinstance(exc, OverloadedError):
            after = max(1, round(exc.retry_after + 0.499))
            context.set_trailing_metadata((("retry-after", str(after)),))
        code = getattr(grpc.StatusCode, STATUS_CODES.get(exc.status, "UNKNOWN"))
        await context.abort(code, str(exc))
        raise AssertionError("grpc's context.abort returned")  # pragma: no cover

    def handler(self) -> Any:
        """The ``grpc.GenericRpcHandler`` serving these RPCs."""
        grpc = _grpc()
        rpcs: dict[str, Callable[..., Any]] = {
            "ServerLive": self.ServerLive,
            "ServerReady": self.ServerReady,
            "ModelReady": self.ModelReady,
            "ServerMetadata": self.ServerMetadata,
            "ModelMetadata": self.ModelMetadata,
            "ModelInfer": self.ModelInfer,
        }
        handlers = {
            rpc: grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=message(f"{rpc}Request").FromString,
                response_serializer=message(f"{rpc}Response").SerializeToString,
            )
            for rpc, fn in rpcs.items()
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_grpc_server(
    service: InferenceService, port: int = 0, host: str | None = None, *, reuse_port: bool = False
) -> tuple[Any, int]:
    """Start a ``grpc.aio`` server for ``service`` on the running event loop.

    Parameters
    ----------
    service : InferenceService
    port : int, default=0
        0 picks a free port.
    host : str, optional
        Interface to bind; ``service.config.host`` (127.0.0.1 by default) when not given.
    reuse_port : bool, default=False
        Let other processes bind the same port (``SO_REUSEPORT``: the workers of one server);
        off, a port another process holds fails with :class:`ParameterError`.

    Returns
    -------
    server : grpc.aio.Server
        Stop it with ``await server.stop(grace)``.
    port : int
        The bound port.

    Raises
    ------
    ParameterError
        The address cannot be bound (the port is in use, the host is not local).
    """
    grpc = _grpc()
    limit = int(service.config.max_body_bytes)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", int(reuse_port)),
        ]
    )
    server.add_generic_rpc_handlers((InferenceServicer(service).handler(),))
    address = _address(host or service.config.host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
        bound = 0
        cause: Exception | None = exc
    else:
        cause = None
    if not bound:
        raise ParameterError(
            f"Could not bind the gRPC server to {address}: is the port in use, or the host not "
            "an interface of this machine? Pick another --grpc-port (0 = any free port)."
        ) from cause
    await server.start()
    return server, int(bound)


def add_grpc(app: Any, port: int = 0, host: str | None = None, *, reuse_port: bool = False) -> None:
    """Make ``app`` (from :func:`~cascadekit.serve.create_app`) serve gRPC on ``port`` too.

    The gRPC server shares the app's service and event loop: it starts in the app's lifespan
    after the warm-up and stops before the service drains, new calls refused and in-flight ones
    given ``config.drain_timeout`` seconds. ``app.state.grpc_port`` is the bound port once the
    app has started (useful with ``port=0``). With ``reuse_port`` several processes (the workers
    of ``cascadekit serve --workers N``) bind the same port and the kernel spreads the
    connections among them; without it a port already bound is an error.

    Examples
    --------
    >>> from cascadekit import Cascade
    >>> from cascadekit.serve import create_app
    >>> app = create_app(Cascade.from_models([lambda x: x, lambda x: x], thresholds=[0.5]))
    >>> add_grpc(app, port=0)
    >>> app.state.grpc_port is None
    True
    """
    _grpc()
    service: InferenceService = app.state.service
    inner = app.router.lifespan_context
    app.state.grpc_port = None

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            server, bound = await start_grpc_server(service, port, host, reuse_port=reuse_port)
            app.state.grpc_port = bound
            log.info("gRPC server running on %s", _address(host or service.config.host, bound))
            try:
                yield state
            finally:
                await server.stop(service.config.drain_timeout)

    app.router.lifespan_context = lifespan
