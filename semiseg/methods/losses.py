"""Loss functions of the reference methods (google-research/semivl `semivl.py` and
`utils/train_utils.py`; LiheYoung/UniMatch `unimatch.py` and `util/ohem.py`).

Quirks of the SemiVL release are kept on purpose, for parity; each is named where it happens.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.utils.labels import IGNORE_INDEX
from semiseg.utils.modules import unwrap

CONF_MODES = ('pixelwise', 'pixelratio', 'pixelavg')
MCC_REDUCTIONS = ('mean', 'mean_valid', 'mean_all')
CRITERIA = ('CELoss', 'mmseg', 'OHEM')


class CrossEntropy(nn.Module):
    """Cross-entropy with ignore index, mean over the non-ignored pixels.

    Unlike plain `F.cross_entropy`, a target that is ignored everywhere gives a zero loss that
    still reaches the graph (instead of NaN), so one all-ignored crop cannot poison training.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # sum / count instead of a branch on "any valid pixel?": no host sync in the training step
        total = F.cross_entropy(pred, target, ignore_index=self.ignore_index, reduction='sum')
        return total / (target != self.ignore_index).sum().clamp_min(1)


class OhemCrossEntropy(nn.Module):
    """Online hard example mining CE (LiheYoung/UniMatch `util/ohem.py`, `ProbOhemCrossEntropy2d`).

    With at least `min_kept` valid pixels, only pixels whose probability of their GT class is at
    most `thresh` are kept; the threshold is raised to the `min_kept`-th smallest probability when
    that is larger, so at least `min_kept` pixels are kept. The mean CE is over the kept pixels.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, thresh: float = 0.7,
                 min_kept: int = 200000):
        super().__init__()
        self.ignore_index = ignore_index
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ce = CrossEntropy(ignore_index)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = target.reshape(-1)
        valid = flat != self.ignore_index
        num_valid = int(valid.sum())
        if num_valid >= self.min_kept and num_valid > 0:
            with torch.no_grad():
                prob = pred.detach().softmax(1).transpose(0, 1).reshape(pred.shape[1], -1)
                gt_prob = prob[flat.clamp(0, pred.shape[1] - 1) * valid,
                               torch.arange(flat.numel(), device=flat.device)]
                gt_prob = gt_prob.masked_fill(~valid, 1.0)
                threshold = torch.tensor(self.thresh, device=pred.device, dtype=gt_prob.dtype)
                if self.min_kept > 0:
                    kth = gt_prob.sort().values[min(flat.numel(), self.min_kept) - 1]
                    threshold = torch.maximum(threshold, kth)
                keep = valid & (gt_prob <= threshold)
            target = flat.masked_fill(~keep, self.ignore_index).reshape(target.shape)
        return self.ce(pred, target)


def head_loss(model: nn.Module) -> nn.Module | None:
    """The model head's own loss (`decode_head.loss_decode`, e.g. ZegCLIP's SegLossPlus), if any.

    It is what the release's 'mmseg' criterion computes; heads without one (VLG, DLV3P) return
    None and 'mmseg' falls back to the CE their loss_decode would be.
    """
    loss = getattr(getattr(unwrap(model), 'decode_head', None), 'loss_decode', None)
    return loss if callable(loss) else None


def build_criterion(cfg_criterion: dict | str, head: nn.Module | None = None) -> nn.Module:
    """The labeled criterion from the config's `criterion` entry.

    `cfg_criterion` is `{'name': ..., 'kwargs': {...}}` or a bare name:
    - 'CELoss': CE, ignore 255, mean over non-ignored pixels;
    - 'mmseg': the head's loss_decode (`head`, see `head_loss`) when the model has one,
      otherwise the same CE as 'CELoss';
    - 'OHEM': OhemCrossEntropy (defaults thresh 0.7, min_kept 200000; kwargs override them).
    """
    if isinstance(cfg_criterion, str):
        name, kwargs = cfg_criterion, {}
    elif isinstance(cfg_criterion, dict) and 'name' in cfg_criterion:
        name, kwargs = cfg_criterion['name'], dict(cfg_criterion.get('kwargs') or {})
    else:
        raise ValueError(f"criterion must be a name or {{'name': ..., 'kwargs': {{...}}}}, got "
                         f'{cfg_criterion!r}')
    if name in ('CELoss', 'mmseg'):
        unknown = set(kwargs) - {'ignore_index'}
        if unknown:
            raise ValueError(f'criterion {name!r} takes only ignore_index, got {sorted(unknown)}')
        if name == 'mmseg' and head is not None:
            return head
        return CrossEntropy(**kwargs)
    if name == 'OHEM':
        unknown = set(kwargs) - {'ignore_index', 'thresh', 'min_kept'}
        if unknown:
            raise ValueError(f"criterion 'OHEM' takes ignore_index, thresh, min_kept; got "
                             f'{sorted(unknown)}')
        return OhemCrossEntropy(**kwargs)
    raise ValueError(f'unknown criterion {name!r}; valid: {", ".join(CRITERIA)}')


def unsupervised_ce_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel CE (B,H,W) against pseudo-labels; like the release's criterion_u it ignores
    nothing (pseudo-labels are always valid class ids; padding is handled by the caller)."""
    return F.cross_entropy(pred, target, reduction='none')


def confidence_weighted_loss(loss_map: torch.Tensor, conf: torch.Tensor, ignore: torch.Tensor,
                             thresh: float, mode: str = 'pixelwise') -> torch.Tensor:
    """Reduce a per-pixel unsupervised loss (B,H,W) as the release does (google-research/semivl
    `utils/train_utils.py`, `confidence_weighted_loss`).

    valid = ignore != 255 (padding), confident = conf >= thresh.
    - pixelwise: sum(loss * [confident & valid]) / #valid over the batch.
    - pixelratio: r_b = #(confident & valid)_b / #valid_b; sum(loss * r_b) / #valid. Quirk:
      no valid mask inside the sum, so padded pixels contribute.
    - pixelavg: a_b = sum(conf * valid)_b / #valid_b; the release multiplies the batch-total loss
      by every a_b and sums: sum(loss) * sum_b(a_b) / #valid. Quirks: padded pixels contribute
      and images are mixed (one image's confidence weights the others' loss); the weighting is
      per image only at batch size 1.
    Denominators are clamped to 1: an all-padded batch gives 0 instead of the release's NaN.
    """
    valid = ignore != IGNORE_INDEX
    num_valid = valid.sum().clamp_min(1)
    if mode == 'pixelwise':
        return (loss_map * ((conf >= thresh) & valid)).sum() / num_valid
    valid_b = valid.flatten(1).sum(1).clamp_min(1)
    if mode == 'pixelratio':
        ratio = ((conf >= thresh) & valid).flatten(1).sum(1) / valid_b
        return (loss_map * ratio[:, None, None]).sum() / num_valid
    if mode == 'pixelavg':
        avg = (conf * valid).flatten(1).sum(1) / valid_b
        return (loss_map.sum() * avg).sum() / num_valid
    raise ValueError(f'unknown conf_mode {mode!r}; valid: {", ".join(CONF_MODES)}')


def confident_fraction(conf: torch.Tensor, ignore: torch.Tensor, thresh: float) -> torch.Tensor:
    """#(conf >= thresh & valid) / #valid over the batch (valid: not padding); 0 when none is valid."""
    valid = ignore != IGNORE_INDEX
    return ((conf >= thresh) & valid).sum() / valid.sum().clamp_min(1)


def mmseg_unsupervised_loss(criterion: nn.Module, pred: torch.Tensor, target: torch.Tensor,
                            conf: torch.Tensor, ignore: torch.Tensor,
                            thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The 'mmseg' criterion_u path (google-research/semivl `semivl.py`, the `criterion_u == 'mmseg'`
    branch): the head's loss on the *unmasked* argmax pseudo-labels (no confidence or padding mask:
    the release passes them as they are; ZegCLIP's loss would read 255 as "no class"), multiplied by
    the confident fraction #(conf >= thresh & valid) / #valid. Returns (scaled loss, fraction).
    """
    fraction = confident_fraction(conf, ignore, thresh)
    return criterion(pred, target) * fraction, fraction


def mcc_loss(pred: torch.Tensor, target: torch.Tensor, reduce: str = 'mean',
             ignore: torch.Tensor | None = None) -> torch.Tensor:
    """MaskCLIP consistency loss: CE against guidance labels, ignore 255 (google-research/semivl
    `semivl.py`, `compute_mc_loss`).

    - mean: mean over pixels whose guidance label is not 255 (0 when there are none, where the
      release would give NaN);
    - mean_valid: sum / #(ignore != 255), i.e. over non-padded pixels (`ignore` required);
    - mean_all: sum / (B*H*W).
    """
    if reduce == 'mean':
        return CrossEntropy(IGNORE_INDEX)(pred, target)
    if reduce not in MCC_REDUCTIONS:
        raise ValueError(f'unknown mcc_loss_reduce {reduce!r}; valid: {", ".join(MCC_REDUCTIONS)}')
    total = F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX, reduction='none').sum()
    if reduce == 'mean_all':
        return total / target.numel()
    if ignore is None:
        raise ValueError("mcc_loss_reduce 'mean_valid' needs the ignore mask")
    return total / (ignore != IGNORE_INDEX).sum().clamp_min(1)


def mcc_lambda(lam: float | Sequence[float], iteration: int, total_iters: int) -> float:
    """MCC weight at `iteration` (google-research/semivl `semivl.py`, `current_mcc_lambda` in the
    training loop).

    A scalar is used as is; [start, end] decays linearly: start*(1-p) + end*p, p = it/total.
    """
    if isinstance(lam, (int, float)):
        return float(lam)
    if isinstance(lam, Sequence) and len(lam) == 2:
        if total_iters <= 0:
            raise ValueError(f'total_iters must be positive, got {total_iters}')
        p = iteration / total_iters
        return float(lam[0]) * (1 - p) + float(lam[1]) * p
    raise ValueError('maskclip_consistency_lambda must be a number or [start, end], got '
                     f'{lam!r}')


def mcc_enabled(lam: float | Sequence[float] | None) -> bool:
    """Whether the config turns MaskCLIP consistency on (a nonzero lambda anywhere)."""
    if lam is None:
        return False
    if isinstance(lam, (int, float)):
        return lam != 0
    return any(float(v) != 0 for v in lam)
