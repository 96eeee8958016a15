"""The torch modules of :mod:`cascadekit.training` (imports torch: import this module lazily)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Committee", "DeferralStudent"]


class DeferralStudent(nn.Module):
    """A frozen student plus a deferral head: outputs ``K`` logits and ``log P(teacher right)``.

    ``forward(x)`` returns ``(n, K + 1)``: the student's class logits, unchanged, then the
    head's estimate of the log-probability that the teacher answers ``x`` correctly. Route it
    with the ``deferral`` score (``log p_max - log P(teacher right)``, higher = keep); its
    predictions are the student's. The head sees the student's log-softmax and, with
    ``feature_layer``, that layer's activations (captured with a forward hook). The student
    stays frozen and in ``eval`` mode.

    Parameters
    ----------
    student : torch.nn.Module
    n_classes : int
    surrogate : {"ce", "ova"}
        ``"ce"``: the head's output is the extra "defer" logit of a (K + 1)-way softmax
        (Mozannar & Sontag 2020); ``"ova"``: a one-vs-all logistic output (Verma & Nalisnick
        2022). Either way the last column is the implied ``log P(teacher right)``.
    feature_layer : str, optional
        Name of a sub-module of ``student`` (as in ``named_modules()``) whose output the head
        also sees, flattened.
    feature_dim : int
        Width of that output (0 without ``feature_layer``).
    hidden : int
        Hidden units of the head.
    """

    def __init__(
        self,
        student: nn.Module,
        n_classes: int,
        surrogate: str = "ce",
        feature_layer: str | None = None,
        feature_dim: int = 0,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        self.student = student
        self.n_classes = int(n_classes)
        self.surrogate = str(surrogate)
        self.feature_layer = feature_layer
        self.head = nn.Sequential(
            nn.Linear(self.n_classes + int(feature_dim), int(hidden)),
            nn.ReLU(),
            nn.Linear(int(hidden), 1),
        )
        for p in self.student.parameters():
            p.requires_grad_(False)
        self._layer = (
            None if feature_layer is None else dict(student.named_modules())[feature_layer]
        )
        self.student.eval()

    def train(self, mode: bool = True) -> DeferralStudent:
        """Only the head trains; the student stays in ``eval`` mode."""
        super().train(mode)
        self.student.eval()
        return self

    def head_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's logits and the head's input features for ``x``."""
        captured: list[torch.Tensor] = []

        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            captured.append(out)

        handle = None if self._layer is None else self._layer.register_forward_hook(hook)
        try:
            z = self.student(x)
        finally:
            if handle is not None:
                handle.remove()
        parts = [torch.log_softmax(z, dim=1), *(c.flatten(1) for c in captured[-1:])]
        return z, torch.cat(parts, dim=1)

    def defer_column(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``log P(teacher right)`` implied by the head's output ``g`` (shape ``(n,)``)."""
        if self.surrogate == "ce":
            # at the surrogate's optimum exp(g) = P(teacher right) * sum_k exp(z_k)
            return g - torch.logsumexp(z, dim=1)
        return nn.functional.logsigmoid(g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, f = self.head_input(x)
        g = self.head(f).squeeze(1)
        return torch.cat([z, self.defer_column(z, g).unsqueeze(1)], dim=1)


class Committee(nn.Module):
    """Several students as one stage: the mean of their softmax, and optionally their agreement.

    ``forward(x)`` returns ``(n, K)`` log-probabilities of the ensemble (the log of the
    members' mean softmax), routed by any score of :mod:`cascadekit.scores` (max-softmax of the
    ensemble, ...); with ``agreement=True`` one more column, the ``agreement`` score: the number
    of members voting for the ensemble's class plus the ensemble's probability of it (see
    :func:`cascadekit.training.scores.committee_agreement`). Every member runs on every input,
    so the committee's cost is the sum of theirs (``count_flops`` counts it).
    """

    def __init__(self, members: Sequence[nn.Module], agreement: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(list(members))
        self.agreement = bool(agreement)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(m(x), dim=1) for m in self.members])
        ens = torch.logsumexp(logp, dim=0) - math.log(len(self.members))
        if not self.agreement:
            return ens
        top, pred = ens.max(dim=1)
        votes = (logp.argmax(dim=2) == pred.unsqueeze(0)).sum(dim=0).to(ens.dtype)
        return torch.cat([ens, (votes + top.exp()).unsqueeze(1)], dim=1)
