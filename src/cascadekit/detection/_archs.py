"""Parameters of the two canvas detectors (no torch import: recipes hash them)."""

from __future__ import annotations

from typing import Any

__all__ = ["DETECTOR_ARCHS"]

#: The two architectures of the cascade: parameters of :class:`SingleShotDetector`.
DETECTOR_ARCHS: dict[str, dict[str, Any]] = {
    "small": {
        "stem": 8,
        "stages": [["s2", 16, 32], [32]],
        "head_convs": 0,
        "head_channels": 32,
        "reg_max": 8,
    },
    "large": {
        "stem": 16,
        "stages": [["s2", 32, 48], [64, 64]],
        "head_convs": 1,
        "head_channels": 64,
        "reg_max": 8,
    },
}
