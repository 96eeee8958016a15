"""The admin API's threshold changes: :class:`ThresholdAdmin` (token check, validation, audit
log, metrics) and :func:`threshold_range`, the range a finite admin threshold must fall in.

Threshold changes and refused admin calls are logged at WARNING on the ``cascadekit.audit``
logger (printed even when logging is not configured) and counted in
``cascadekit_admin_requests_total``.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import CascadeError
from ..oip import BadRequestError, ProtocolError, loads_json
from ..router import decode_threshold, encode_threshold
from .metrics import ServeMetrics
from .model_state import ModelState
from .replies import LogLimiter, Reply

__all__ = ["ThresholdAdmin", "audit", "threshold_range"]

#: Threshold changes and refused admin calls, at WARNING (shown even without logging set up).
audit = logging.getLogger("cascadekit.audit")


def threshold_range(
    observed: tuple[float, float] | None, current: Sequence[float]
) -> tuple[float, float] | None:
    """The finite thresholds an admin may set for one stage: around the scores seen so far.

    ``observed`` is the (min, max) of the stage's finite scores seen at warm-up and on traffic;
    ``current`` the thresholds in use and those the model was configured with. The range spans
    them, widened on each side by their width or their magnitude, whichever is larger (at least
    1): few scores may have been seen yet (the warm-up input alone), and a slip of an order of
    magnitude (90 for 9) is still caught while any threshold that could split real scores
    passes. None when nothing is known yet (every finite value passes).

    Examples
    --------
    >>> threshold_range((0.2, 1.0), [0.9])
    (-0.8, 2.0)
    >>> threshold_range((10.0, 10.0), [-math.inf])
    (0.0, 20.0)
    >>> threshold_range(None, [math.inf]) is None
    True
    """
    values = [v for v in (observed or ()) if math.isfinite(v)]
    values += [v for v in current if math.isfinite(v)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    width = max(hi - lo, abs(lo), abs(hi), 1.0)
    return lo - width, hi + width


class ThresholdAdmin:
    """Change a served model's default thresholds through the admin API.

    Parameters
    ----------
    admin_token : str or None
        The token an admin call must show (``Authorization: Bearer <token>``); None disables
        the admin API (403).
    metrics : ServeMetrics
        Counts the calls (``admin_requests``) and shows the thresholds (``threshold``).
    log_limiter : LogLimiter
        Bounds the log lines of refused calls per client.
    lookup : callable
        The :class:`ModelState` of a model by name (raises ``ModelNotFoundError``, a 404).
    on_change : callable, optional
        Called with the model's name and its new thresholds after every change, before the
        answer (e.g. to share them with the server's other worker processes).
    """

    def __init__(
        self,
        admin_token: str | None,
        metrics: ServeMetrics,
        log_limiter: LogLimiter,
        lookup: Callable[[str], ModelState],
        on_change: Callable[[str, Sequence[float]], None] | None = None,
    ) -> None:
        self.admin_token = admin_token
        self.metrics = metrics
        self.log_limiter = log_limiter
        self.lookup = lookup
        self.on_change = on_change

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries the admin token (constant-time compare)."""
        if self.admin_token is None or not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.admin_token.encode()
        )

    def handle_set_thresholds(
        self, name: str, body: bytes, authorization: str | None, client: str | None = None
    ) -> Reply:
        """Answer ``PUT /admin/models/{name}/thresholds`` with body ``{"thresholds": [...]}``.

        Thresholds are numbers, ``null`` or ``"inf"`` (+inf: every input moves on) or
        ``"-inf"`` (every input stays); infinities only spelled so. A finite threshold far
        outside the scores seen so far (see :func:`threshold_range`) is refused unless the body
        also holds ``"force": true``. Needs ``Authorization: Bearer <token>`` matching
        ``$CASCADEKIT_ADMIN_TOKEN``; without a configured token the admin API is disabled
        (403). In-flight requests keep the thresholds they started with; new requests use the
        new ones. Every change and every refused call is logged on ``cascadekit.audit`` and
        counted in ``cascadekit_admin_requests_total``; ``client`` (the caller's address) goes
        into the log.
        """
        who = client or "unknown client"
        admin = self.metrics.admin_requests
        try:
            if self.admin_token is None:
                admin.labels(outcome="disabled").inc()
                raise ProtocolError(
                    "The admin API is disabled: set CASCADEKIT_ADMIN_TOKEN (or "
                    "ServeConfig.admin_token) before starting the server to enable it.",
                    403,
                )
            if not self.authorized(authorization):
                admin.labels(outcome="unauthorized").inc()
                if self.log_limiter.allow(f"admin-auth/{who}") is not None:
                    audit.warning(
                        "refused admin call from %s on model %r: %s",
                        who,
                        name,
                        "no Authorization header" if not authorization else "wrong token",
                    )
                exc = ProtocolError(
                    "Expected 'Authorization: Bearer <token>' with the admin token; got "
                    + ("no Authorization header." if not authorization else "a wrong token."),
                    401,
                )
                reply = Reply.error(exc)
                reply.headers["www-authenticate"] = "Bearer"
                return reply
            st = self.lookup(name)
            doc = loads_json(body)
            if (
                not isinstance(doc, dict)
                or not set(doc) <= {"thresholds", "force"}
                or not isinstance(doc.get("thresholds"), list)
                or not isinstance(doc.get("force", False), bool)
            ):
                raise BadRequestError(
                    'Expected a JSON body {"thresholds": [t1, ...]} with one number per '
                    'non-final stage (and optionally "force": true); got '
                    f"{json.dumps(doc)[:100]}."
                )
            cascade = st.served.cascade
            old = cascade.thresholds or ()
            values = self._check_admin_thresholds(st, doc["thresholds"], bool(doc.get("force")))
            try:
                cascade.thresholds = values  # validated; one atomic assignment
            except CascadeError as exc:
                raise BadRequestError(f"{exc}") from exc
            new = cascade.thresholds or ()
            for k, t in enumerate(new):
                self.metrics.threshold.labels(model=name, stage=str(k)).set(t)
            if self.on_change is not None:
                self.on_change(name, new)
            admin.labels(outcome="changed").inc()
            audit.warning(
                "model %r: thresholds %s -> %s by %s",
                name,
                [encode_threshold(t) for t in old],
                [encode_threshold(t) for t in new],
                who,
            )
            return Reply.json(
                {
                    "model": name,
                    "thresholds": [encode_threshold(t) for t in new],
                    "previous": [encode_threshold(t) for t in old],
                }
            )
        except ProtocolError as exc:
            if exc.status in (400, 404):
                admin.labels(outcome="rejected").inc()
            return Reply.error(exc)

    def _check_admin_thresholds(self, st: ModelState, raw: list[Any], force: bool) -> list[float]:
        """Decode admin thresholds: infinities only when spelled so; finite values near the
        scores seen (unless ``force``)."""
        n = st.served.cascade.n_stages - 1
        if len(raw) != n:
            raise BadRequestError(
                f"Expected {n} threshold(s) for a {n + 1}-stage cascade; got {len(raw)}."
            )
        current = st.served.cascade.thresholds or ()
        values: list[float] = []
        for k, v in enumerate(raw):
            explicit = v is None or v in ("inf", "-inf")
            if not explicit and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise BadRequestError(
                    f'Expected threshold {k} to be a number, null, "inf" or "-inf"; got '
                    f"{json.dumps(v)[:40]}."
                )
            try:
                t = decode_threshold(v)
            except (CascadeError, OverflowError, ValueError) as exc:
                raise BadRequestError(f"Threshold {k}: {exc}") from exc
            if not explicit and not math.isfinite(t):
                raise BadRequestError(
                    f'Threshold {k} is {t} but was not written as an infinity; write "inf", '
                    '"-inf" or null to mean it.'
                )
            if math.isfinite(t) and not force:
                observed = st.scores[k] if k < len(st.scores) else None
                refs = [ts[k] for ts in (current, st.configured) if k < len(ts)]
                rng = threshold_range(observed, refs)
                if rng is not None and not rng[0] <= t <= rng[1]:
                    seen = "" if observed is None else f" (scores seen: {observed[0]:.4g} to "
                    seen += "" if observed is None else f"{observed[1]:.4g})"
                    raise BadRequestError(
                        f"Threshold {k} = {t:g} is far outside the scores of stage {k}{seen}; "
                        f"expected a value in [{rng[0]:.4g}, {rng[1]:.4g}]. Check for a typo; "
                        'send "force": true to set it anyway.'
                    )
            values.append(t)
        return values
