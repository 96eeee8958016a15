"""A stage served elsewhere: call a model over the Open Inference Protocol (KServe v2) HTTP API.

:class:`RemoteModel` is EBJR's edge/cloud split: the student runs locally and the teacher on a
server (a ``cascadekit serve`` process, Triton, KServe, MLServer or any other Open Inference
Protocol server). Each call has a deadline and retries transient failures; when the remote model
cannot answer in time it raises :class:`~cascadekit.errors.StageUnavailableError`, and
:meth:`cascadekit.Cascade.predict` then returns the student's answer flagged ``fallback``
instead of failing. A response that is not what the protocol promises (malformed JSON, a
missing output, the wrong shape) is a configuration mistake and raises
:class:`~cascadekit.errors.StageError` with what was expected and what came back.

httpx is imported when the first request is sent, never when cascadekit is imported.

Examples
--------
>>> import numpy as np
>>> from cascadekit import Cascade, Stage
>>> teacher = RemoteModel("http://127.0.0.1:9", "teacher", input_name="x", timeout=0.2,
...                       retries=0)
>>> teacher
RemoteModel(url='http://127.0.0.1:9', model='teacher', timeout=0.2, retries=0)
>>> student = lambda x: np.stack([x, -x], axis=1)
>>> c = Cascade([Stage(model=student), Stage(model=teacher)], thresholds=[1.0])
>>> r = c.predict(np.array([3.0, 0.5]))   # nothing listens on port 9: the student answers
>>> r.stage, r.predictions, r.fallback
(array([0, 0], dtype=int32), array([0, 0]), array([False,  True]))
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._optional import require
from ..errors import ParameterError, StageError, StageUnavailableError
from ._base import ModelAdapter, check_batch_size, n_inputs

__all__ = ["RemoteModel"]

#: HTTP statuses worth another attempt: overloaded, bad gateway, unavailable, gateway timeout.
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_TINY = 1e-30


def _httpx() -> Any:
    return require("httpx", "remote", "RemoteModel")


def _datatypes() -> dict[str, np.dtype[Any]]:
    """Protocol datatype -> numpy dtype, from the server's codec (numpy-only, no web framework)."""
    from ..serve.protocol import DATATYPES

    return {k: v for k, v in DATATYPES.items() if k != "BYTES"}


def _oip_datatype(arr: np.ndarray, owner: str) -> str:
    for name, dtype in _datatypes().items():
        if dtype == arr.dtype:
            return name
    raise StageError(
        f"{owner} can send numeric or boolean arrays; got dtype {arr.dtype}. Convert the "
        "inputs (e.g. np.asarray(x, dtype=np.float32)) before calling the remote model."
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _is_2d_float(tensor: Mapping[str, Any]) -> bool:
    shape = tensor.get("shape")
    return (
        str(tensor.get("datatype")).startswith("FP") and isinstance(shape, list) and len(shape) == 2
    )


def _server_message(response: Any) -> str:
    """The ``{"error": ...}`` text of an error response, or the start of its body."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    text = str(response.text).strip().replace("\n", " ")
    return text[:200] + ("..." if len(text) > 200 else "")


class RemoteModel(ModelAdapter):
    """A model served over the Open Inference Protocol v2 HTTP/JSON API, used as a stage.

    Each call sends one ``POST {url}/v2/models/{model}/infer`` request per chunk of at most
    ``batch_size`` inputs, with the inputs as a JSON tensor of shape ``(n, ...)``, and reads the
    logits (or probabilities) of the chosen output tensor back as an ``(n, C)`` array.

    Parameters
    ----------
    url : str
        Base URL of the server, e.g. ``"http://10.0.0.7:8000"`` (no ``/v2`` suffix).
    model : str
        Model name on the server.
    input_name : str, optional
        Name of the input tensor. By default it is read once from the model's metadata
        (``GET /v2/models/{model}``), which must then list exactly one input.
    output : str, optional
        Output tensor holding the logits; it is requested by name. By default it is chosen from
        the metadata (read when ``input_name`` is not given): ``"logits"`` if listed, else
        ``"probabilities"`` (a ``cascadekit serve`` cascade), else the only 2-D floating
        output; without metadata, the same rule is applied to the response's outputs.
    probabilities : bool, optional
        Whether ``output`` holds probabilities; they are turned into log-probabilities, which
        have the same argmax and softmax. By default true when the output's name contains
        ``"prob"``.
    datatype : str, optional
        Open Inference Protocol datatype of the input (``"FP32"``, ``"UINT8"``, ...). By default
        the metadata's datatype when it was read, else the one matching the array's dtype.
    timeout : float, default=5.0
        Deadline in seconds for one chunk, over every attempt, the waits between them and the
        whole of each response body (a server that sends its answer a byte at a time is cut
        off at the deadline, not per read).
    max_response_bytes : int, default=64 MiB
        Largest response body read; a larger one raises
        :class:`~cascadekit.errors.StageError` (it is refused from its declared
        ``Content-Length`` when there is one, else as soon as it grows past the limit).
    retries : int, default=2
        Further attempts after a connection error, a timed-out attempt or a 429/502/503/504
        response, while the deadline allows. Waits ``backoff * 2**attempt`` seconds (with
        jitter, or the server's ``Retry-After`` when shorter than the deadline) in between.
    backoff : float, default=0.05
        First wait between attempts, in seconds.
    batch_size : int or None, optional
        Largest number of inputs per request (None = the whole batch).
    n_classes : int, optional
        Number of classes, when known in advance.
    parameters : mapping, optional
        Request ``parameters`` sent with every request (scalars), e.g. ``{"threshold": 1e9}`` to
        make a remote cascade answer everything with its last stage.
    headers : mapping, optional
        Extra HTTP headers (e.g. ``{"Authorization": "Bearer ..."}``).
    transport : httpx.BaseTransport, optional
        Custom transport for the underlying ``httpx.Client`` (tests, proxies).
    name : str, optional
        Shown in errors; defaults to ``"remote:<model>"``.

    Raises
    ------
    StageUnavailableError
        From a call, when no attempt succeeded before the deadline (timeouts, refused
        connections, 5xx or 429 responses). A cascade falls back to the previous stage.
    StageError
        From a call, when the server rejected the request (4xx other than 429, with its
        ``error`` message) or answered with something that is not a valid inference response.

    Examples
    --------
    >>> m = RemoteModel("http://127.0.0.1:8000/", "fashion-mnist", input_name="image",
    ...                 timeout=1.0, batch_size=64)
    >>> m.infer_url
    'http://127.0.0.1:8000/v2/models/fashion-mnist/infer'
    >>> RemoteModel("127.0.0.1:8000", "m")
    Traceback (most recent call last):
    ...
    cascadekit.errors.ParameterError: Expected url to start with http:// or https://; ...
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        input_name: str | None = None,
        output: str | None = None,
        probabilities: bool | None = None,
        datatype: str | None = None,
        timeout: float = 5.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        retries: int = 2,
        backoff: float = 0.05,
        batch_size: int | None = None,
        n_classes: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Any = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ParameterError(
                f"Expected url to start with http:// or https://; got {url!r}. Pass the "
                "server's base URL, e.g. 'http://127.0.0.1:8000'."
            )
        if not isinstance(model, str) or not model or "/" in model:
            raise ParameterError(
                f"Expected model to be a non-empty model name without '/'; got {model!r}."
            )
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ParameterError(
                f"Expected timeout to be a positive number of seconds; got {timeout!r}."
            )
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ParameterError(
                f"Expected max_response_bytes to be a positive integer; got {max_response_bytes!r}."
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ParameterError(f"Expected retries to be a non-negative integer; got {retries!r}.")
        if not (isinstance(backoff, (int, float)) and backoff >= 0):
            raise ParameterError(f"Expected backoff to be >= 0 seconds; got {backoff!r}.")
        if datatype is not None and datatype not in _datatypes():
            raise ParameterError(
                f"Expected datatype to be one of {sorted(_datatypes())}; got {datatype!r}."
            )
        self.url = url.rstrip("/")
        self.model = model
        self.input_name = input_name
        self.output = output
        self.probabilities = probabilities
        self.datatype = datatype
        self.timeout = float(timeout)
        self.max_response_bytes = max_response_bytes
        self.retries = retries
        self.backoff = float(backoff)
        self.batch_size = check_batch_size(batch_size, "RemoteModel")
        self.n_classes = None if n_classes is None else int(n_classes)
        self.parameters = dict(parameters or {})
        self.headers = dict(headers or {})
        self.transport = transport
        self.name = name or f"remote:{model}"
        self._client: Any = None
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def infer_url(self) -> str:
        """``{url}/v2/models/{model}/infer``."""
        return f"{self.url}/v2/models/{self.model}/infer"

    @property
    def metadata_url(self) -> str:
        """``{url}/v2/models/{model}``."""
        return f"{self.url}/v2/models/{self.model}"

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                httpx = _httpx()
                kwargs: dict[str, Any] = {"headers": self.headers}
                if self.transport is not None:
                    kwargs["transport"] = self.transport
                self._client = httpx.Client(**kwargs)
            return self._client

    def close(self) -> None:
        """Close the HTTP connections (a later call opens new ones)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __del__(self) -> None:
        client = self.__dict__.get("_client")
        if client is not None:
            client.close()

    def __getstate__(self) -> dict[str, Any]:  # picklable for Ray and multiprocessing
        state = self.__dict__.copy()
        state["_client"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"RemoteModel(url={self.url!r}, model={self.model!r}, timeout={self.timeout}, "
            f"retries={self.retries})"
        )

    def _request(self, method: str, url: str, body: bytes | None, deadline: float) -> Any:
        """Send with retries until ``deadline`` (monotonic seconds); return a 2xx/4xx response."""
        httpx = _httpx()
        client = self._http()
        attempt = 0
        last = "no attempt was made"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait: float | None = None
            try:
                response = self._send(client, method, url, body, deadline)
            except httpx.TimeoutException:
                last = f"attempt {attempt + 1} timed out"
            except httpx.TransportError as exc:
                last = f"attempt {attempt + 1} failed: {type(exc).__name__}: {exc}"
            else:
                status = int(response.status_code)
                if status < 500 and status != 429:
                    return response
                last = f"attempt {attempt + 1} got HTTP {status}: {_server_message(response)}"
                if status not in _RETRY_STATUS and status != 500:
                    break
                wait = _retry_after(response.headers)
            if attempt >= self.retries:
                break
            if wait is None:
                wait = self.backoff * (2**attempt) * (0.5 + random.random())
            if time.monotonic() + wait >= deadline:
                break
            time.sleep(wait)
            attempt += 1
        raise StageUnavailableError(
            f"Remote model {self.model!r} at {self.url} did not answer within {self.timeout:g} s "
            f"({attempt + 1} attempt(s); last: {last}). Check that the server is up, or raise "
            "timeout=/retries=."
        )

    def _send(self, client: Any, method: str, url: str, body: bytes | None, deadline: float) -> Any:
        """One attempt: the response with its body read in full, within ``deadline`` and
        ``max_response_bytes`` (raises ``httpx.TimeoutException`` past the deadline)."""
        httpx = _httpx()
        too_big = (
            f"Remote model {self.model!r} at {self.url} sent a response larger than "
            f"max_response_bytes={self.max_response_bytes}. Raise max_response_bytes= if the "
            "model's outputs are that large, or check the URL."
        )
        with client.stream(
            method,
            url,
            content=body,
            headers={"Content-Type": "application/json"} if body is not None else None,
            timeout=httpx.Timeout(max(1e-3, deadline - time.monotonic())),
        ) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and (
                len(declared) > 18 or int(declared) > self.max_response_bytes
            ):
                raise StageError(too_big)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise StageError(too_big)
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the response did not arrive before the deadline")
            kept = ("content-encoding", "content-length", "transfer-encoding")
            return httpx.Response(  # the decoded body, without the headers of its encoding
                response.status_code,
                headers=[(k, v) for k, v in response.headers.items() if k.lower() not in kept],
                content=b"".join(chunks),
                request=response.request,
            )

    def _json(self, response: Any, what: str) -> dict[str, Any]:
        status = int(response.status_code)
        if status >= 400:
            hint = (
                f"Is {self.model!r} the model's name on that server (GET {self.url}/v2/models/...)?"
                if status == 404
                else "Check input_name=, datatype= and the input shape against the model's "
                f"metadata (GET {self.metadata_url})."
            )
            raise StageError(
                f"Remote model {self.model!r} at {self.url} rejected the {what} with HTTP "
                f"{status}: {_server_message(response)}. {hint}"
            )
        try:
            doc = json.loads(response.content)
        except ValueError:
            raise StageError(
                f"Remote model {self.model!r} at {self.url} answered the {what} with a body that "
                f"is not JSON (content-type {response.headers.get('content-type')!r}). Expected an "
                "Open Inference Protocol response; is the URL an OIP v2 server?"
            ) from None
        if not isinstance(doc, dict):
            raise StageError(
                f"Remote model {self.model!r} at {self.url} answered the {what} with a JSON "
                f"{type(doc).__name__}; expected a JSON object."
            )
        return doc

    def _resolve_input(self, deadline: float) -> tuple[str, str | None]:
        """Input name and datatype, from the arguments or the model's metadata (read once)."""
        if self.input_name is not None:
            return self.input_name, self.datatype
        response = self._request("GET", self.metadata_url, None, deadline)
        meta = self._json(response, "metadata request")
        inputs = meta.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            got = len(inputs) if isinstance(inputs, list) else inputs
            raise StageError(
                f"Remote model {self.model!r} at {self.url}: expected its metadata to list "
                f"exactly one input; got {got!r}. Pass input_name=... ."
            )
        name = inputs[0].get("name")
        if not isinstance(name, str):
            raise StageError(
                f"Remote model {self.model!r} at {self.url}: its metadata input has no name. "
                "Pass input_name=... ."
            )
        dt = inputs[0].get("datatype")
        self.input_name = name
        if self.datatype is None and isinstance(dt, str) and dt in _datatypes():
            self.datatype = dt
        outputs = [o for o in meta.get("outputs") or [] if isinstance(o, dict)]
        if self.output is None and outputs:
            names = [o.get("name") for o in outputs]
            if "logits" in names:
                self.output = "logits"
            elif "probabilities" in names:
                self.output = "probabilities"
            else:
                two_d = [o for o in outputs if _is_2d_float(o)]
                if len(two_d) != 1:
                    raise StageError(
                        f"Remote model {self.model!r} at {self.url} lists outputs {names}; "
                        "cannot tell which holds the logits. Pass output=... ."
                    )
                self.output = str(two_d[0].get("name"))
        return self.input_name, self.datatype

    def _pick_output(self, outputs: list[Any]) -> dict[str, Any]:
        by_name = {o.get("name"): o for o in outputs if isinstance(o, dict)}
        if self.output is not None:
            if self.output not in by_name:
                raise StageError(
                    f"Remote model {self.model!r} at {self.url} returned outputs "
                    f"{sorted(map(str, by_name))}; expected one named {self.output!r}. Pass "
                    "output=... with one of those."
                )
            return dict(by_name[self.output])
        for wanted in ("logits", "probabilities"):
            if wanted in by_name:
                return dict(by_name[wanted])
        floats = [o for o in by_name.values() if _is_2d_float(o)]
        if len(floats) == 1:
            return dict(floats[0])
        raise StageError(
            f"Remote model {self.model!r} at {self.url} returned outputs "
            f"{sorted(map(str, by_name))}; cannot tell which holds the logits. Pass output=... ."
        )

    def _decode(self, doc: dict[str, Any], m: int) -> NDArray[np.floating[Any]]:
        outputs = doc.get("outputs")
        if not isinstance(outputs, list):
            raise StageError(
                f"Remote model {self.model!r} at {self.url} answered without an 'outputs' list "
                f"(keys: {sorted(doc)}). Expected an Open Inference Protocol inference response."
            )
        out = self._pick_output(outputs)
        oname, shape, dt, data = (
            out.get("name"),
            out.get("shape"),
            out.get("datatype"),
            out.get("data"),
        )
        where = f"Remote model {self.model!r} at {self.url}, output {oname!r}"
        if dt not in _datatypes() or dt == "BOOL":
            raise StageError(f"{where}: expected a numeric datatype; got {dt!r}.")
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(s, int) and s >= 0 for s in shape)
        ):
            raise StageError(f"{where}: expected shape [{m}, n_classes]; got {shape!r}.")
        if shape[0] != m:
            raise StageError(f"{where}: expected {m} rows (one per input sent); got shape {shape}.")
        if data is None:
            raise StageError(
                f"{where}: has no JSON 'data' (binary tensor data is not requested by "
                "RemoteModel; is a proxy rewriting the response?)."
            )
        try:
            arr = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise StageError(f"{where}: expected a flat list of numbers in 'data'.") from None
        if arr.size != shape[0] * shape[1]:
            raise StageError(
                f"{where}: shape {shape} needs {shape[0] * shape[1]} values; got {arr.size}."
            )
        arr = arr.reshape(shape)
        as_proba = self.probabilities
        if as_proba is None:
            as_proba = "prob" in str(oname).lower()
        if as_proba:
            arr = np.log(np.clip(arr, _TINY, None))
        return arr.astype(np.float32) if dt in ("FP32", "FP16") else arr

    # -- the model -----------------------------------------------------------------------------

    def forward(self, batch: Any) -> NDArray[np.floating[Any]]:
        """Logits of one chunk of inputs, from one inference request (with retries)."""
        deadline = time.monotonic() + self.timeout
        arr = np.asarray(batch)
        if hasattr(batch, "detach"):  # a torch tensor
            arr = batch.detach().cpu().numpy()
        m = n_inputs(arr)
        input_name, datatype = self._resolve_input(deadline)
        datatype = datatype or _oip_datatype(arr, f"RemoteModel {self.name!r}")
        if arr.dtype.kind not in "biuf":
            raise StageError(
                f"RemoteModel {self.name!r} can send numeric or boolean arrays; got dtype "
                f"{arr.dtype}. Encode the inputs as numbers first."
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise StageError(
                f"RemoteModel {self.name!r} got {int((~np.isfinite(arr)).sum())} non-finite "
                "input values (NaN or inf), which JSON cannot carry. Clean the inputs first."
            )
        payload: list[Any] = arr.astype(_datatypes()[datatype], copy=False).ravel().tolist()
        request: dict[str, Any] = {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(arr.shape),
                    "datatype": datatype,
                    "data": payload,
                }
            ]
        }
        if self.output is not None:
            request["outputs"] = [{"name": self.output}]
        if self.parameters:
            request["parameters"] = self.parameters
        body = json.dumps(request).encode()
        response = self._request("POST", self.infer_url, body, deadline)
        out = self._decode(self._json(response, "inference request"), m)
        if self.n_classes is None:
            self.n_classes = int(out.shape[1])
        return out
