"""Single-shot detectors in plain PyTorch (no torchvision), in the named sizes of ``_archs``.

This module imports torch: import it lazily (``cascadekit.detection`` does).

The network is anchor-free, in the style of FCOS / Generalized Focal Loss (GFL), on one feature
map of stride ``s`` (4 for ``small``, ``large``, ``xlarge``: a 16 x 16 grid on a 64 x 64 canvas;
8 for ``small_s8``: an 8 x 8 grid):

* input: raw pixels 0..255, shape ``(n, H, W)`` (uint8 or float), normalised by the first layer;
* backbone: a stride-2 stem, then stages of 3x3 convolutions with batch norm and ReLU; a stage
  that starts with ``"s2"`` halves the resolution;
* head: ``head_convs`` 3x3 convolutions, then a 1x1 convolution giving per cell
  ``n_classes`` sigmoid class logits and, per box side (left, top, right, bottom), logits over
  ``reg_max + 1`` distance bins (``0 .. reg_max`` cells from the cell centre). The expected
  distance under the softmax of these bins is the box (GFL's distribution head); their
  log-sum-exp is the per-coordinate free energy of EBJR eq. 13.

Training (:func:`detector_loss`): quality focal loss on the class logits (the target of a
positive cell is the IoU of its predicted box with its true box, so the box score reflects
localisation), distribution focal loss on the bins and a GIoU loss on the decoded boxes. A cell
is positive for a true box when its centre lies inside the box and within ``center_radius``
cells of the box centre (the cell holding the centre always is); a cell inside several boxes
takes the smallest.

Examples
--------
>>> import torch
>>> from cascadekit.detection.nets import build_detector
>>> net = build_detector("small").eval()
>>> cls, box = net(torch.zeros(2, 64, 64))
>>> tuple(cls.shape), tuple(box.shape)
((2, 10, 16, 16), (2, 4, 9, 16, 16))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional as F

from ..errors import UnknownNameError
from ._archs import DETECTOR_ARCHS
from .nms import nms_unchecked

__all__ = [
    "DETECTOR_ARCHS",
    "SingleShotDetector",
    "assign_targets",
    "build_detector",
    "decode",
    "detector_loss",
]

#: Mean and standard deviation used to normalise raw canvas pixels (mostly black background).
PIXEL_MEAN = 0.1
PIXEL_STD = 0.25


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SingleShotDetector(nn.Module):
    """Backbone + head; ``forward(x) -> (class_logits, box_logits)``.

    Parameters
    ----------
    stem : int
        Channels of the stride-2 stem convolution.
    stages : list of list
        Each stage is a list of channel counts, one 3x3 convolution each; a leading ``"s2"``
        makes its first convolution stride 2.
    head_convs, head_channels : int
        3x3 convolutions of the head before the 1x1 prediction layer.
    n_classes : int
        Foreground classes (sigmoid logits, no background column).
    reg_max : int
        Distances are predicted over the bins ``0 .. reg_max`` (in cells).

    Returns of ``forward``: class logits ``(n, n_classes, G, G)`` and box logits
    ``(n, 4, reg_max + 1, G, G)``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        stem: int = 8,
        stages: Sequence[Sequence[Any]] = (("s2", 16), (24,)),
        head_convs: int = 0,
        head_channels: int = 24,
        n_classes: int = 10,
        reg_max: int = 8,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN))
        self.register_buffer("std", torch.tensor(PIXEL_STD))
        self.n_classes = int(n_classes)
        self.reg_max = int(reg_max)
        layers: list[nn.Module] = [_conv(1, int(stem), 2)]
        width, stride = int(stem), 2
        for stage in stages:
            first = True
            for item in stage:
                if item == "s2":
                    continue
                s = 2 if first and stage[0] == "s2" else 1
                layers.append(_conv(width, int(item), s))
                stride *= s
                width = int(item)
                first = False
        for _ in range(int(head_convs)):
            layers.append(_conv(width, int(head_channels)))
            width = int(head_channels)
        self.body = nn.Sequential(*layers)
        self.stride = stride
        self.pred = nn.Conv2d(width, self.n_classes + 4 * (self.reg_max + 1), 1)
        bias = self.pred.bias
        assert bias is not None
        with torch.no_grad():  # start with few confident boxes (focal-loss prior 0.01)
            bias[: self.n_classes].fill_(-4.6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw pixels ``(n, H, W)`` -> class logits and box-bin logits."""
        z = (x.to(torch.float32)[:, None] / 255.0 - self.mean) / self.std
        out = self.pred(self.body(z))
        n, _, g1, g2 = out.shape
        cls = out[:, : self.n_classes]
        box = out[:, self.n_classes :].reshape(n, 4, self.reg_max + 1, g1, g2)
        return cls, box


def build_detector(
    arch: str | Mapping[str, Any] = "small", n_classes: int = 10
) -> SingleShotDetector:
    """Build a named architecture (``"small"``, ``"large"``, ``"small_s8"``, ``"xlarge"``: see
    :data:`DETECTOR_ARCHS`) or one from a custom parameter dict.

    Examples
    --------
    >>> build_detector("large").stride, build_detector("small_s8").stride
    (4, 8)
    >>> build_detector("huge")
    Traceback (most recent call last):
    ...
    cascadekit.errors.UnknownNameError: Unknown detector architecture 'huge'; ...
    """
    if isinstance(arch, str):
        if arch not in DETECTOR_ARCHS:
            raise UnknownNameError(
                f"Unknown detector architecture {arch!r}; expected one of "
                f"{', '.join(DETECTOR_ARCHS)} or a dict of SingleShotDetector parameters."
            )
        params = dict(DETECTOR_ARCHS[arch])
    else:
        params = dict(arch)
    return SingleShotDetector(n_classes=n_classes, **params)


# ----------------------------------------------------------------------------------------------
# targets and loss


def _centers(grid: int, stride: int) -> NDArray[np.float32]:
    c = (np.arange(grid, dtype=np.float32) + 0.5) * stride
    cy, cx = np.meshgrid(c, c, indexing="ij")
    return np.stack([cx.ravel(), cy.ravel()], axis=1)  # (G*G, 2), row-major cells


def assign_targets(
    boxes: Sequence[NDArray[np.floating[Any]]],
    labels: Sequence[NDArray[np.integer[Any]]],
    grid: int,
    stride: int,
    center_radius: float = 1.5,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Per image and cell: the class of its true box (-1 = background) and that box.

    Returns ``classes`` of shape ``(n, G*G)`` and ``gt_boxes`` of shape ``(n, G*G, 4)``.

    Examples
    --------
    >>> import numpy as np
    >>> cls, gt = assign_targets([np.array([[0.0, 0.0, 8.0, 8.0]])], [np.array([3])], 4, 4)
    >>> cls.reshape(4, 4)
    array([[ 3,  3, -1, -1],
           [ 3,  3, -1, -1],
           [-1, -1, -1, -1],
           [-1, -1, -1, -1]])
    """
    centers = _centers(grid, stride)
    n = len(boxes)
    classes = np.full((n, grid * grid), -1, dtype=np.int64)
    gt = np.zeros((n, grid * grid, 4), dtype=np.float32)
    for i in range(n):
        b = np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4)
        if b.shape[0] == 0:
            continue
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        best_area = np.full(grid * grid, np.inf, dtype=np.float32)
        for j in np.argsort(-area):  # smaller boxes overwrite larger ones
            x1, y1, x2, y2 = b[j]
            bc = np.array([(x1 + x2) / 2, (y1 + y2) / 2], dtype=np.float32)
            inside = (
                (centers[:, 0] > x1)
                & (centers[:, 0] < x2)
                & (centers[:, 1] > y1)
                & (centers[:, 1] < y2)
            )
            near = np.all(np.abs(centers - bc) <= center_radius * stride, axis=1)
            pos = inside & near
            home = int(min(bc[1] // stride, grid - 1)) * grid + int(min(bc[0] // stride, grid - 1))
            pos[home] = True
            pos &= area[j] <= best_area
            classes[i, pos] = int(labels[i][j])
            gt[i, pos] = b[j]
            best_area[pos] = area[j]
    return classes, gt


def _decode_boxes(dist: torch.Tensor, centers: torch.Tensor, stride: int) -> torch.Tensor:
    """(..., 4) distances in cells (l, t, r, b) + centres (..., 2) -> xyxy pixels."""
    d = dist * stride
    return torch.cat([centers - d[..., :2], centers + d[..., 2:]], dim=-1)


def _expected_dist(box_logits: torch.Tensor) -> torch.Tensor:
    """(n, 4, B, G, G) -> expected distances (n, G*G, 4) in cells."""
    n, _, nb, g1, g2 = box_logits.shape
    p = box_logits.softmax(dim=2)
    bins = torch.arange(nb, dtype=p.dtype, device=p.device).view(1, 1, nb, 1, 1)
    return (p * bins).sum(dim=2).reshape(n, 4, g1 * g2).transpose(1, 2)


def _pair_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of matching rows of (m, 4) boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    elt = torch.minimum(a[:, :2], b[:, :2])
    erb = torch.maximum(a[:, 2:], b[:, 2:])
    enc = (erb - elt).clamp(min=0).prod(dim=1) + 1e-7
    return iou, iou - (enc - union) / enc


def detector_loss(
    cls_logits: torch.Tensor,
    box_logits: torch.Tensor,
    classes: torch.Tensor,
    gt_boxes: torch.Tensor,
    stride: int,
) -> torch.Tensor:
    """Quality focal loss + distribution focal loss + 2 x GIoU loss, per positive cell."""
    n, c, g1, g2 = cls_logits.shape
    nb = box_logits.shape[2]
    centers = torch.from_numpy(_centers(g1, stride)).to(cls_logits.dtype)
    logits = cls_logits.reshape(n, c, g1 * g2).transpose(1, 2)  # (n, G*G, C)
    pos = classes >= 0
    n_pos = max(1.0, float(pos.sum()))
    dist = _expected_dist(box_logits)  # (n, G*G, 4)
    pred = _decode_boxes(dist, centers, stride)
    target = torch.zeros_like(logits)
    box_loss = logits.new_zeros(())
    dfl = logits.new_zeros(())
    if pos.any():
        pb, gb = pred[pos], gt_boxes[pos]
        iou, giou = _pair_iou(pb, gb)
        target[pos, classes[pos]] = iou.detach().clamp(min=0.0)
        box_loss = (1.0 - giou).sum() / n_pos
        cent = centers.expand(n, -1, -1)[pos]
        tdist = torch.cat([cent - gb[:, :2], gb[:, 2:] - cent], dim=1) / stride
        tdist = tdist.clamp(0.0, nb - 1 - 1e-3)
        left = tdist.floor().long()
        wl = left.to(tdist.dtype) + 1.0 - tdist
        bl = box_logits.reshape(n, 4, nb, g1 * g2).permute(0, 3, 1, 2)[pos]  # (m, 4, B)
        logp = bl.log_softmax(dim=-1)
        lp_left = logp.gather(-1, left[..., None]).squeeze(-1)
        lp_right = logp.gather(-1, (left + 1)[..., None]).squeeze(-1)
        dfl = -(wl * lp_left + (1.0 - wl) * lp_right).mean(dim=1).sum() / n_pos
    sig = logits.sigmoid()
    qfl = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    qfl = (qfl * (sig - target).abs().pow(2.0)).sum() / n_pos
    return qfl + 0.25 * dfl + 2.0 * box_loss


# ----------------------------------------------------------------------------------------------
# inference


def decode(
    cls_logits: torch.Tensor,
    box_logits: torch.Tensor,
    stride: int,
    *,
    score_threshold: float = 0.05,
    nms_iou: float = 0.6,
    max_detections: int = 100,
    pre_nms: int = 200,
) -> list[dict[str, np.ndarray]]:
    """Network outputs -> one detections dict per image (the common output format).

    Each cell proposes one box, for its highest-scoring class (score = sigmoid of its logit);
    boxes scoring at least ``score_threshold`` (at most ``pre_nms``) go through class-wise NMS
    and the best ``max_detections`` are kept. Every dict holds ``boxes`` (k, 4) xyxy pixels,
    ``labels``, ``scores``, ``logits`` (k, n_classes) and ``box_logits`` (k, 4, reg_max + 1).
    """
    n, c, g1, g2 = cls_logits.shape
    nb = box_logits.shape[2]
    centers = torch.from_numpy(_centers(g1, stride)).to(torch.float32)
    logits = cls_logits.reshape(n, c, g1 * g2).transpose(1, 2).to(torch.float32)
    bins = box_logits.reshape(n, 4, nb, g1 * g2).permute(0, 3, 1, 2).to(torch.float32)
    boxes = _decode_boxes(_expected_dist(box_logits.to(torch.float32)), centers, stride)
    best, label = logits.max(dim=2)
    score = best.sigmoid()
    out: list[dict[str, np.ndarray]] = []
    for i in range(n):
        s = score[i].numpy().astype(np.float64)
        cand = np.flatnonzero(s >= score_threshold)
        cand = cand[np.argsort(-s[cand], kind="stable")[:pre_nms]]
        b = boxes[i].numpy().astype(np.float64)[cand]
        lab = label[i].numpy()[cand]
        keep_parts = [np.flatnonzero(lab == k) for k in np.unique(lab)]
        keep = np.concatenate(
            [part[nms_unchecked(b[part], s[cand][part], nms_iou)] for part in keep_parts]
            or [np.zeros(0, dtype=np.intp)]
        )
        keep = keep[np.argsort(-s[cand][keep], kind="stable")][:max_detections]
        rows = cand[keep]
        out.append(
            {
                "boxes": b[keep],
                "labels": lab[keep].astype(np.int64),
                "scores": s[rows],
                "logits": logits[i].numpy().astype(np.float64)[rows],
                "box_logits": bins[i].numpy().astype(np.float64)[rows],
            }
        )
    return out
