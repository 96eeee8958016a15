"""EBJR for object detection: per-image detection energy and cascades of two detectors.

A cheap student detector answers the images it is confident about; the others go to a teacher
detector (EBJR section 2.3, eqs. 12-14). **Score direction: higher = keep on the student**; an
image stays when ``score >= threshold``.

* Scores (numpy only): :func:`detection_energy`, :func:`detection_score`,
  :class:`DetectionScorer` (which boxes count, no-box policy, sigmoid / softmax heads, class and
  box terms and their weight) and the alternatives named in :data:`DETECTION_SCORES`.
* Box operations: :func:`nms`, :func:`batched_nms`, :func:`box_iou` (numpy; no torchvision).
* Data: :func:`make_canvas_dataset`, Fashion-MNIST items on 64 x 64 canvases with true boxes.
* Detectors (torch, imported lazily): :func:`load_detector`, :func:`load_detector_pair` train
  the small and large single-shot detectors of :mod:`cascadekit.detection.nets` once and cache
  them by recipe hash; :func:`predict` returns the common output format.
* mAP (pycocotools, ``pip install "cascadekit[detection]"``): :func:`mean_average_precision`,
  :class:`CocoMAP`.
* Curves: :func:`detection_cascade_curve` (mAP at a grid of thresholds),
  :func:`random_detection_curve`, the hindsight router :func:`oracle_detection_curve` (images
  ordered by :func:`detection_oracle_gains`, a linearised per-image mAP gain),
  :func:`detection_gap_captured`, :func:`compare_detection_routers`,
  :func:`speedup_at_map_fraction`.

Examples
--------
>>> import numpy as np
>>> from cascadekit.detection import detection_energy
>>> out = {"boxes": np.array([[0.0, 0.0, 9.0, 9.0]]), "labels": np.array([0]),
...        "scores": np.array([0.7]), "logits": np.array([[1.0, 1.0]]),
...        "box_logits": np.zeros((1, 4, 2))}
>>> detection_energy([out], box_weight=1.0).round(4)   # (1 + log 2) + log 2
array([2.3863])
"""

from .cascade import (
    DetectionComparison,
    compare_detection_routers,
    detection_cascade_curve,
    detection_gap_captured,
    detection_oracle_gains,
    oracle_detection_curve,
    random_detection_curve,
    route_images,
    speedup_at_map_fraction,
    threshold_at_map,
)
from .data import DETECTION_SPLITS, CanvasSpec, DetectionDataset, make_canvas_dataset
from .energy import (
    DETECTION_SCORES,
    Detections,
    DetectionScorer,
    as_detections,
    detection_energy,
    detection_score,
)
from .metrics import CocoMAP, MatchedDetections, mean_average_precision
from .nms import batched_nms, box_area, box_iou, nms
from .train import (
    DETECTION_CODE_VERSION,
    DetectorRecipe,
    TrainedDetector,
    default_detector_recipes,
    load_detector,
    load_detector_pair,
    predict,
)

__all__ = [
    "DETECTION_CODE_VERSION",
    "DETECTION_SCORES",
    "DETECTION_SPLITS",
    "CanvasSpec",
    "CocoMAP",
    "DetectionComparison",
    "DetectionDataset",
    "DetectionScorer",
    "Detections",
    "DetectorRecipe",
    "MatchedDetections",
    "TrainedDetector",
    "as_detections",
    "batched_nms",
    "box_area",
    "box_iou",
    "compare_detection_routers",
    "default_detector_recipes",
    "detection_cascade_curve",
    "detection_energy",
    "detection_gap_captured",
    "detection_oracle_gains",
    "detection_score",
    "load_detector",
    "load_detector_pair",
    "make_canvas_dataset",
    "mean_average_precision",
    "nms",
    "oracle_detection_curve",
    "predict",
    "random_detection_curve",
    "route_images",
    "speedup_at_map_fraction",
    "threshold_at_map",
]
