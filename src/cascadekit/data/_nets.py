"""The torch networks of the Fashion-MNIST zoo (imports torch: import this module lazily).

Every network takes **raw pixels** 0..255 of shape ``(n, 28, 28)`` (float32 or uint8) and
returns logits ``(n, 10)``. Scaling to [0, 1] and standardising is the first layer
(:class:`RawPixelNorm`, constants kept as buffers in the ``state_dict``), so a server can feed
the pixels exactly as they arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UnknownNameError

__all__ = ["ARCHITECTURES", "FashionCNN", "FashionMLP", "RawPixelNorm", "build_network"]

#: Mean and standard deviation of Fashion-MNIST train pixels scaled to [0, 1].
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


class RawPixelNorm(nn.Module):
    """``(x / 255 - mean) / std`` for raw 0..255 pixels (any numeric dtype, cast to float32)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float = PIXEL_MEAN, std: float = PIXEL_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(torch.float32) / 255.0 - self.mean) / self.std


class FashionMLP(nn.Module):
    """Raw pixels -> normalise -> flatten -> [Linear -> ReLU] x len(hidden) -> Linear(10)."""

    def __init__(self, hidden: Sequence[int] = (128,), n_classes: int = 10) -> None:
        super().__init__()
        self.norm = RawPixelNorm()
        layers: list[nn.Module] = []
        width = 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, n_classes))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.norm(x).flatten(1))


class FashionCNN(nn.Module):
    """Raw pixels -> normalise -> blocks of [Conv3x3 -> (BatchNorm) -> ReLU -> MaxPool2]
    -> flatten -> (Dropout -> Linear -> ReLU) -> Dropout -> Linear(10)."""

    def __init__(
        self,
        channels: Sequence[int] = (8, 16),
        fc_hidden: int = 0,
        batch_norm: bool = False,
        dropout: float = 0.0,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.norm = RawPixelNorm()
        layers: list[nn.Module] = []
        c_in, side = 1, 28
        for c in channels:
            layers.append(nn.Conv2d(c_in, int(c), 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(c)))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = int(c), side // 2
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        width = c_in * side * side
        if fc_hidden:
            if dropout:
                head.append(nn.Dropout(dropout))
            head += [nn.Linear(width, int(fc_hidden)), nn.ReLU()]
            width = int(fc_hidden)
        if dropout:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(width, n_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x).reshape(-1, 1, 28, 28)
        return self.head(self.features(z))


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": FashionMLP, "cnn": FashionCNN}


def build_network(arch: str, params: dict[str, Any]) -> nn.Module:
    """Build an untrained network by architecture name and keyword parameters."""
    if arch not in ARCHITECTURES:
        raise UnknownNameError(
            f"Expected an architecture in {sorted(ARCHITECTURES)}; got {arch!r}."
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return ARCHITECTURES[arch](**kwargs)
