"""Learning to defer with the teacher as the expert, and committees of cheap students.

:func:`train_deferral` adds a deferral head to a trained student (two-stage learning to defer:
the student's predictions stay as they are, only the head learns when the teacher is the better
bet). :func:`train_committee` trains several cheap students and wraps them into one
:class:`~cascadekit.training.Committee` stage.

**Where the teacher's correctness comes from.** The head learns ``m = 1[teacher right on x]``,
which must be measured on inputs the teacher did not train on: on its own training data a
teacher is right almost always and ``m`` carries no signal. Train the head on held-out inputs
(for instance one half of a *select* split, keeping the other half for the choices), or on
teacher logits cross-fitted over the training set (k teachers, each predicting the fold it did
not see).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..data.cache import recipe_hash
from ..errors import ParameterError, SampleCountError, UnknownNameError
from ._common import (
    ProgressFn,
    TrainResult,
    as_tensor,
    check_label_width,
    check_labels,
    environment,
    fingerprint,
    import_torch,
    model_input,
    recipe_settings,
    run_loop,
    train_cached,
)
from .students import distill, fit

__all__ = ["SURROGATES", "train_committee", "train_deferral"]

#: Deferral surrogates: cross-entropy (Mozannar & Sontag 2020), one-vs-all (Verma & Nalisnick 2022).
SURROGATES = ("ce", "ova")


def train_deferral(
    student: Any,
    inputs: Any,
    labels: ArrayLike,
    teacher_correct: ArrayLike,
    *,
    surrogate: str = "ce",
    feature_layer: str | None = None,
    hidden: int = 32,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    random_state: int = 0,
    threads: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train a deferral head on a frozen student: learning to defer to the teacher.

    The result's ``model`` is a :class:`~cascadekit.training.DeferralStudent` whose outputs are
    the student's ``K`` logits and ``log P(teacher right | x)``; route it with the
    ``deferral`` score. Losses, with ``[z, g]`` the student's logits and the head's output:

    * ``surrogate="ce"`` (Mozannar & Sontag 2020): ``-log softmax([z, g])_y - m * log
      softmax([z, g])_defer``; with ``z`` fixed its minimiser has ``exp(g) = q * sum exp(z)``,
      ``q = P(m = 1 | x)``;
    * ``surrogate="ova"`` (Verma & Nalisnick 2022): logistic loss of ``g`` for ``m``.

    Parameters
    ----------
    student : torch.nn.Module
        A trained student (not modified: its weights are frozen inside the result).
    inputs, labels : training inputs of the head and their labels
        Inputs the teacher did **not** train on (see the module docstring).
    teacher_correct : array-like of bool, shape (n_inputs,)
        Whether the teacher is right on each input.
    feature_layer : str, optional
        A sub-module of the student whose activations the head also sees (e.g. ``"body.1"``).
    hidden : int
        Hidden units of the head.

    Notes
    -----
    Other parameters are those of :func:`~cascadekit.training.fit`.

    Raises
    ------
    SampleCountError
        ``teacher_correct`` or ``labels`` do not have one entry per input.
    UnknownNameError
        An unknown surrogate or feature layer.
    ClassCountError
        The student's output does not cover the labels.
    TrainingError
        The loss became NaN or inf (nothing is cached).

    Examples
    --------
    >>> import numpy as np, torch, tempfile
    >>> torch.manual_seed(0) and None
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> r = train_deferral(torch.nn.Linear(4, 2), x, y, x[:, 1] > -1, epochs=2,
    ...                    cache_dir=tempfile.mkdtemp())
    >>> r.model(torch.from_numpy(x[:3])).shape
    torch.Size([3, 3])
    """
    torch = import_torch()
    from ._modules import DeferralStudent

    if surrogate not in SURROGATES:
        raise UnknownNameError(f"Expected surrogate in {list(SURROGATES)}; got {surrogate!r}.")
    x = as_tensor(torch, inputs)
    n = int(x.shape[0])
    if n < 1:
        raise SampleCountError("Expected at least one training input; got none.")
    y = check_labels(labels, n)
    m = np.asarray(teacher_correct)
    if m.shape != (n,):
        raise SampleCountError(
            f"Expected teacher_correct with one bool per input ({n},); got shape {m.shape}. "
            "Measure the teacher on the same inputs, in order (inputs it did not train on)."
        )
    m = m.astype(bool)
    width = check_label_width(torch, student, x, y)
    mods = dict(student.named_modules())
    if feature_layer is not None and feature_layer not in mods:
        raise UnknownNameError(
            f"Expected feature_layer to name a sub-module of the student; got {feature_layer!r}, "
            f"not among {[k for k in mods if k][:12]}."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(random_state))
        probe = DeferralStudent(student, width, surrogate, feature_layer, 0, hidden)
        with torch.no_grad():
            _, f0 = probe.head_input(model_input(torch, x[:1]))
        model = DeferralStudent(
            student, width, surrogate, feature_layer, int(f0.shape[1]) - width, hidden
        )
    settings = {
        "surrogate": surrogate,
        "feature_layer": feature_layer,
        "hidden": int(hidden),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "random_state": int(random_state),
    }
    recipe = {
        "method": "deferral",
        **recipe_settings(settings),
        "student": fingerprint(student),
        "head_init": fingerprint(model.head),
        "inputs": fingerprint(x),
        "labels": fingerprint(y),
        "teacher_correct": fingerprint(m),
        **environment(torch),
    }
    yt = torch.from_numpy(y)
    mt = torch.from_numpy(m.astype(np.float32))

    def train() -> list[float]:
        # the student is frozen: its logits and features are computed once
        zs, fs = [], []
        with torch.no_grad():
            for lo in range(0, n, 2000):
                z, f = model.head_input(model_input(torch, x[lo : lo + 2000]))
                zs.append(z)
                fs.append(f)
        z_all, f_all = torch.cat(zs), torch.cat(fs)

        def loss_fn(g: Any, idx: Any) -> Any:
            g = g.squeeze(1)
            if surrogate == "ova":
                return torch.nn.functional.binary_cross_entropy_with_logits(g, mt[idx])
            ext = torch.cat([z_all[idx], g.unsqueeze(1)], dim=1)
            logp = torch.log_softmax(ext, dim=1)
            nll = -logp.gather(1, yt[idx].unsqueeze(1)).squeeze(1)
            return (nll - mt[idx] * logp[:, -1]).mean()

        losses = run_loop(
            torch,
            model.head,
            f_all,
            n,
            loss_fn,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            random_state=random_state,
            progress=progress,
            desc=f"deferral head ({surrogate})",
            threads=threads,
        )
        model.eval()
        return losses

    return train_cached(
        "deferral",
        model,
        recipe,
        train,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        settings=settings,
    )


def train_committee(
    make_member: Callable[[int], Any],
    n_members: int,
    inputs: Any,
    labels: ArrayLike,
    *,
    method: str = "fit",
    agreement: bool = True,
    teacher_logits: ArrayLike | None = None,
    random_state: int = 0,
    progress: ProgressFn | None = None,
    **kwargs: Any,
) -> TrainResult:
    """Train ``n_members`` cheap students and return them as one :class:`Committee` stage.

    Member ``i`` is ``make_member(i)`` (the same architecture with another initialisation, or
    another architecture), trained with :func:`~cascadekit.training.fit` or, with
    ``teacher_logits``, :func:`~cascadekit.training.distill`, on seed ``random_state + i``; each is
    cached on its own. Route the committee by ``agreement`` (Kolawole et al.: keep what the
    members agree on) or, without the agreement column, by any score of the ensemble's
    log-probabilities. Count the committee's whole cost: ``count_flops`` of the committee sums
    its members'.

    Parameters
    ----------
    make_member : callable ``i -> torch.nn.Module``
        Builds member ``i``, untrained; called under ``torch.manual_seed(random_state + i)``.
    n_members : int
        At least 2.
    method : {"fit", "distill"}
    agreement : bool
        Add the ``agreement`` column to the committee's outputs.
    kwargs : settings passed to the training function (epochs, lr, tau, alpha, cache_dir...)

    Returns
    -------
    TrainResult
        ``model`` is the committee; ``key`` hashes the members' keys; ``losses`` are the
        members' final epoch losses.

    Examples
    --------
    >>> import numpy as np, torch, tempfile
    >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int64)
    >>> r = train_committee(lambda i: torch.nn.Linear(4, 2), 3, x, y, epochs=2,
    ...                     cache_dir=tempfile.mkdtemp())
    >>> r.model(torch.from_numpy(x[:2])).shape   # 2 classes + the agreement column
    torch.Size([2, 3])
    """
    torch = import_torch()
    from ._modules import Committee

    if int(n_members) < 2:
        raise ParameterError(f"Expected a committee of at least 2 members; got {n_members!r}.")
    if method not in ("fit", "distill"):
        raise UnknownNameError(f"Expected method 'fit' or 'distill'; got {method!r}.")
    if (method == "distill") != (teacher_logits is not None):
        raise ParameterError(
            "Expected teacher_logits= exactly when method='distill' (the teacher's logits on the "
            "training inputs)."
        )
    members, results = [], []
    k = int(n_members)
    for i in range(k):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(random_state) + i)
            member = make_member(i)

        def sub(desc: str, frac: float, i: int = i) -> None:
            if progress is not None:
                progress(f"member {i + 1}/{k}: {desc}", (i + frac) / k)

        if method == "distill":
            r = distill(
                member,
                inputs,
                labels,
                teacher_logits=teacher_logits,
                random_state=int(random_state) + i,
                progress=sub,
                **kwargs,
            )
        else:
            r = fit(
                member, inputs, labels, random_state=int(random_state) + i, progress=sub, **kwargs
            )
        members.append(r.model)
        results.append(r)
    committee = Committee(members, agreement=agreement).eval()
    return TrainResult(
        model=committee,
        method="committee",
        key=recipe_hash({"members": [r.key for r in results], "agreement": bool(agreement)}),
        path=None,
        from_cache=all(r.from_cache for r in results),
        losses=[r.losses[-1] for r in results],
        seconds=sum(r.seconds for r in results),
        settings={"method": method, "n_members": k, "agreement": bool(agreement)},
    )
