"""Features a learned policy decides on: scores of the logits, a committee's agreement, and
hidden activations of a network (the last through torch forward hooks, imported lazily).

Every function returns a float64 array of shape ``(n_samples, n_features)``; stack them with
:func:`stack_features`. Logit features need nothing but the node's own logits, so a policy
trained on them routes from saved logits alone (``cascadekit route``); the others must be
given to ``route`` as extra features (``--features F.npy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp

from .._validation import as_logits, check_finite, check_same_samples, check_temperature
from ..errors import InputShapeError, ParameterError

__all__ = [
    "committee_feature_names",
    "committee_features",
    "hidden_features",
    "logit_feature_names",
    "logit_features",
    "stack_features",
]

Float64Array = NDArray[np.float64]

_SCORE_NAMES = ("energy", "max_softmax", "margin", "entropy", "max_logit")


def _log_softmax(z: Float64Array) -> Float64Array:
    out: Float64Array = z - logsumexp(z, axis=1, keepdims=True)
    return out


def logit_feature_names(n_classes: int, top_k: int = 3, class_probs: bool = True) -> list[str]:
    """Column names of :func:`logit_features`.

    Examples
    --------
    >>> logit_feature_names(3, top_k=2, class_probs=False)
    ['energy', 'max_softmax', 'margin', 'entropy', 'max_logit', 'top1', 'top2']
    """
    k = min(int(top_k), n_classes)
    names = [*_SCORE_NAMES, *(f"top{i + 1}" for i in range(k))]
    if class_probs:
        names += [f"p{j}" for j in range(n_classes)]
    return names


def logit_features(
    logits: ArrayLike, *, temperature: float = 1.0, top_k: int = 3, class_probs: bool = True
) -> Float64Array:
    """Routing scores and probabilities of one node's logits, as policy features.

    Columns (see :func:`logit_feature_names`): the five scores of :mod:`cascadekit.scores`
    (energy, max-softmax, margin, negative entropy, max logit; each "higher = confident"),
    the ``top_k`` largest softmax probabilities, and with ``class_probs`` the whole softmax
    vector, which tells the policy *which* class was predicted (some classes are confused
    more often than others, which no single confidence score can express).

    Examples
    --------
    >>> f = logit_features(np.array([[2.0, 0.0, 0.0]]), top_k=2, class_probs=False)
    >>> f.shape, float(f[0, 2])   # the margin
    ((1, 7), 2.0)
    """
    z = as_logits(logits, "logits").astype(np.float64)
    t = check_temperature(temperature)
    if int(top_k) < 1:
        raise ParameterError(f"Expected top_k >= 1; got {top_k!r}.")
    zt = z / t
    logp = _log_softmax(zt)
    p = np.exp(logp)
    srt = -np.sort(-p, axis=1)
    top2 = np.partition(z, z.shape[1] - 2, axis=1)[:, -2:]
    cols = [
        t * logsumexp(zt, axis=1),
        srt[:, 0],
        (top2[:, 1] - top2[:, 0]) / t,
        np.sum(p * logp, axis=1),
        z.max(axis=1) / t,
    ]
    out = np.column_stack([*cols, srt[:, : min(int(top_k), z.shape[1])]])
    if class_probs:
        out = np.hstack([out, p])
    res: Float64Array = np.ascontiguousarray(out, dtype=np.float64)
    return res


def committee_feature_names() -> list[str]:
    """Column names of :func:`committee_features`.

    Examples
    --------
    >>> committee_feature_names()[:2]
    ['agree', 'other_p_of_pred']
    """
    return ["agree", "other_p_of_pred", "p_of_other_pred", "total_variation", "other_max_softmax"]


def committee_features(logits: ArrayLike, other_logits: ArrayLike) -> Float64Array:
    """Agreement between a node and a second cheap model (a committee, Wang et al. 2022).

    Columns: 1 if both predict the same class; the other model's probability of this node's
    class; this node's probability of the other's class; the total-variation distance between
    the two softmax vectors; the other model's max-softmax. Remember to add the second
    model's cost to the node's cost when you route with these features.

    Examples
    --------
    >>> a = np.array([[3.0, 0.0], [3.0, 0.0]])
    >>> b = np.array([[2.0, 0.0], [0.0, 2.0]])
    >>> committee_features(a, b)[:, 0]
    array([1., 0.])
    """
    za = as_logits(logits, "logits").astype(np.float64)
    zb = as_logits(other_logits, "other model's logits").astype(np.float64)
    check_same_samples([("logits", za.shape[0]), ("other model's logits", zb.shape[0])])
    if za.shape[1] != zb.shape[1]:
        raise InputShapeError(
            f"Expected the committee's logits to have the same classes; got {za.shape[1]} and "
            f"{zb.shape[1]} columns."
        )
    pa, pb = np.exp(_log_softmax(za)), np.exp(_log_softmax(zb))
    ia, ib = pa.argmax(axis=1), pb.argmax(axis=1)
    rows = np.arange(za.shape[0])
    return np.column_stack(
        [
            (ia == ib).astype(np.float64),
            pb[rows, ia],
            pa[rows, ib],
            0.5 * np.abs(pa - pb).sum(axis=1),
            pb.max(axis=1),
        ]
    )


def stack_features(*blocks: ArrayLike) -> Float64Array:
    """Concatenate feature blocks column-wise (1-D blocks become one column).

    Examples
    --------
    >>> stack_features(np.zeros((2, 3)), np.ones(2)).shape
    (2, 4)
    """
    if not blocks:
        raise ParameterError("Expected at least one block of features.")
    arrs = []
    for i, b in enumerate(blocks):
        a = np.asarray(b, dtype=np.float64)
        a = a[:, None] if a.ndim == 1 else a
        if a.ndim != 2:
            raise InputShapeError(f"Expected block {i} of shape (n_samples, k); got {a.shape}.")
        check_finite(a, f"feature block {i}")
        arrs.append(a)
    check_same_samples([(f"feature block {i}", a.shape[0]) for i, a in enumerate(arrs)])
    return np.hstack(arrs)


def hidden_features(
    module: Any,
    inputs: Any,
    layers: str | Sequence[str],
    *,
    pool: int | None = 2,
    batch_size: int = 2000,
    outputs: list[Float64Array] | None = None,
) -> list[Float64Array]:
    """Activations of named sub-modules of a torch network, captured with forward hooks.

    The network runs once per batch in ``eval`` mode under ``torch.inference_mode``; its
    weights are not touched, and the hooks and its training flag are restored afterwards.
    4-D activations ``(n, C, H, W)`` are average-pooled to ``(C, pool, pool)`` (``pool=None``
    keeps them whole) and flattened.

    Parameters
    ----------
    module : torch.nn.Module
    inputs : ndarray or tensor, first axis = samples
    layers : str or sequence of str
        Names as in ``module.named_modules()`` (e.g. ``"body.1"``).

    outputs : list, optional
        When given, the network's own outputs (batches, float64) are appended to it, so one
        pass gives both the activations and the logits.

    Returns
    -------
    list of ndarray, one (n_samples, d) array per layer.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> [h.shape for h in hidden_features(net, np.zeros((5, 4), np.float32), "1")]
    [(5, 3)]
    """
    from ..costs import import_torch

    torch = import_torch()
    names = [layers] if isinstance(layers, str) else list(layers)
    mods = dict(module.named_modules())
    missing = [nm for nm in names if nm not in mods]
    if missing:
        raise ParameterError(
            f"Expected layer names of the network; {missing} are not among "
            f"{[k for k in mods if k][:12]}..."
        )
    store: dict[str, list[Float64Array]] = {nm: [] for nm in names}

    def make_hook(nm: str) -> Any:
        def hook(_m: Any, _inp: Any, out: Any) -> None:
            t = out.detach()
            if t.ndim == 4 and pool is not None:
                t = torch.nn.functional.adaptive_avg_pool2d(t, int(pool))
            store[nm].append(t.reshape(t.shape[0], -1).to(torch.float64).cpu().numpy())

        return hook

    handles = [mods[nm].register_forward_hook(make_hook(nm)) for nm in names]
    was_training = module.training
    module.eval()
    try:
        x_all = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        with torch.inference_mode():
            for lo in range(0, int(x_all.shape[0]), int(batch_size)):
                out = module(x_all[lo : lo + int(batch_size)])
                if outputs is not None:
                    outputs.append(out.to(torch.float64).cpu().numpy())
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return [np.vstack(store[nm]) for nm in names]
