"""Parameters of the two canvas detectors (no torch import: recipes hash them)."""

from __future__ import annotations

from typing import Any

__all__ = ["DETECTOR_ARCHS"]

#: Named architectures: parameters of :class:`SingleShotDetector`. ``small`` and ``large`` are
#: the first pair (7.4x FLOPs apart, stride 4); ``small_s8`` is a cheaper student that predicts
#: on a stride-8 grid (8 x 8 cells on a 64 x 64 canvas, a wider receptive field for fewer
#: FLOPs) and ``xlarge`` a wider, deeper teacher (both added for a pair closer to EBJR's
#: EfficientDet-D0 -> D4 regime, ~22x FLOPs apart).
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
    "small_s8": {
        "stem": 8,
        "stages": [["s2", 16], ["s2", 32, 32], [32]],
        "head_convs": 0,
        "head_channels": 32,
        "reg_max": 8,
    },
    "xlarge": {
        "stem": 16,
        "stages": [["s2", 32, 64], [96, 96]],
        "head_convs": 1,
        "head_channels": 96,
        "reg_max": 8,
    },
}
