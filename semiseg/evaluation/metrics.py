"""mIoU as the release computes it (LiheYoung/UniMatch `supervised.py`, `evaluate`, with
`util/utils.py`, `intersectionAndUnion`; google-research/semivl vendors both under
`third_party/unimatch/`).

Per image: the prediction is set to 255 where the GT is 255; histograms over classes 0..K-1 of
the intersection, the prediction and the GT (other values fall outside the bins); union =
pred + gt - intersection. Sums are all-reduced across ranks; IoU_c = 100 I_c / (U_c + 1e-10);
mIoU is the mean over all K classes, so a class absent from both prediction and GT counts as 0
(mmseg's IoUMetric instead takes the nanmean over classes with a nonzero union).

Counts are kept as int64 (exact; the release accumulates float32). All-reducing the totals once
equals the release's per-image all-reduce, and does not need equal image counts per rank.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from semiseg.utils.labels import IGNORE_INDEX


def intersection_and_union(pred: torch.Tensor, gt: torch.Tensor,
                           num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class (intersection, union, gt area) counts of one or more label maps."""
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} '
                         'must have the same shape; resize the prediction to the mask size')
    pred = pred.reshape(-1).long().masked_fill(gt.reshape(-1) == IGNORE_INDEX, IGNORE_INDEX)
    gt = gt.reshape(-1).long()

    def hist(x: torch.Tensor) -> torch.Tensor:
        x = x[(x >= 0) & (x < num_classes)]
        return torch.bincount(x, minlength=num_classes)

    area_inter = hist(pred[pred == gt])
    area_pred, area_gt = hist(pred), hist(gt)
    return area_inter, area_pred + area_gt - area_inter, area_gt


class IoUAccumulator:
    """Accumulates intersection/union counts over images; `compute()` gives IoU in percent."""

    def __init__(self, num_classes: int):
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.num_classes = num_classes
        self.intersection = torch.zeros(num_classes, dtype=torch.long)
        self.union = torch.zeros(num_classes, dtype=torch.long)
        self.target = torch.zeros(num_classes, dtype=torch.long)
        self._reduced: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add label maps (any matching shapes, e.g. (B,H,W)); 255 in `gt` is ignored.

        Counts live on the device of the inputs (no per-image host sync on CUDA)."""
        inter, union, target = intersection_and_union(pred, gt, self.num_classes)
        if self.intersection.device != inter.device:
            self.intersection = self.intersection.to(inter.device)
            self.union = self.union.to(inter.device)
            self.target = self.target.to(inter.device)
        self.intersection += inter
        self.union += union
        self.target += target
        self._reduced = None

    def all_reduce(self, device: torch.device | str | None = None) -> IoUAccumulator:
        """Sum the counts over all ranks (no-op without torch.distributed); the local counts are
        kept, so calling it again is safe. `device`: where to reduce (default: where the counts
        are; with NCCL a rank that saw no image reduces on the current CUDA device)."""
        packed = torch.stack((self.intersection, self.union))
        if dist.is_available() and dist.is_initialized():
            if device is None:
                device = packed.device
                if dist.get_backend() == 'nccl' and device.type != 'cuda':
                    device = torch.device('cuda', torch.cuda.current_device())
            packed = packed.to(device)
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        packed = packed.cpu()
        self._reduced = (packed[0], packed[1])
        return self

    def compute(self) -> tuple[float, list[float]]:
        """(mIoU, per-class IoU), percent; uses the all-reduced counts after `all_reduce()`."""
        inter, union = self._reduced or (self.intersection.cpu(), self.union.cpu())
        iou = 100.0 * inter.double() / (union.double() + 1e-10)
        return float(iou.mean()), [float(v) for v in iou]
