"""The evaluation loop: batch-1 val loader, inference mode, argmax, mIoU (google-research/semivl
`third_party/unimatch/supervised.py`, `evaluate`)."""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from semiseg.utils.imaging import center_crop
from semiseg.utils.modules import unwrap

from .metrics import IoUAccumulator

logger = logging.getLogger(__name__)

STRIDED_MODES = ('zegclip_sliding_window', 'padded_sliding_window')


def _default_predict() -> Callable:
    from .inference import predict
    return predict


class EvaluationInterrupted(RuntimeError):
    """`should_stop` said stop between two evaluation batches (the evaluation is redone later)."""


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, cfg: dict,
             device: torch.device | str | None = None,
             predict_fn: Callable | None = None,
             should_stop: Callable[[], bool] | None = None) -> dict:
    """mIoU of `model` on `loader` (batches {'img': (1,3,h,w), 'mask': (1,H,W), 'id': [str]}).

    Uses cfg['eval_mode'], cfg['crop_size'], for the zegclip and padded sliding windows
    cfg['stride'], and for 'original' the optional cfg['eval_size_multiple'] (UniMatch V2: 14).
    out_size = the mask size (zegclip_sliding_window resizes to it, so a resized val image is
    scored at its original resolution); center_crop crops the mask too. Counts
    are all-reduced across ranks. The model runs unwrapped from DDP in eval mode; its previous
    train/eval mode is restored. `should_stop` is asked between batches (a stop request: SIGTERM,
    Ctrl-C); when it says yes, EvaluationInterrupted is raised within one image.
    Returns {'miou': float, 'per_class_iou': list[float]} in percent.
    """
    for key in ('eval_mode', 'crop_size', 'nclass'):
        if key not in cfg:
            raise KeyError(f'evaluate needs config key {key!r}')
    mode = cfg['eval_mode']
    stride = cfg.get('stride') if mode in STRIDED_MODES else None
    if mode == 'zegclip_sliding_window' and stride is None:
        raise KeyError("eval_mode 'zegclip_sliding_window' needs config key 'stride' (e.g. 426)")
    net = unwrap(model)
    if device is None:
        device = next(net.parameters()).device
    predict = predict_fn or _default_predict()
    acc = IoUAccumulator(cfg['nclass'])
    was_training = net.training
    net.eval()
    try:
        for item in loader:
            if should_stop is not None and should_stop():
                raise EvaluationInterrupted('evaluation stopped on request')
            img, mask = item['img'].to(device), item['mask'].to(device)
            logits = predict(net, img, mode, cfg['crop_size'], stride=stride,
                             out_size=tuple(mask.shape[-2:]), size_multiple=cfg.get('eval_size_multiple'),
                             max_batch=cfg.get('eval_max_windows') or None)   # engine option; 0/unset: all
            if mode == 'center_crop':
                mask = center_crop(mask, cfg['crop_size'])
            if tuple(logits.shape[-2:]) != tuple(mask.shape[-2:]):
                name = item['id'][0] if 'id' in item else '?'
                raise ValueError(
                    f'eval_mode {mode!r} gave {tuple(logits.shape[-2:])} scores for a '
                    f'{tuple(mask.shape[-2:])} mask (image {name}); '
                    'only zegclip_sliding_window resizes to the mask size, so use it when the '
                    'val images are resized (img_scale)')
            acc.update(logits.argmax(dim=1), mask)
    finally:
        net.train(was_training)
    acc.all_reduce()
    miou, per_class = acc.compute()
    logger.info('evaluated %s: mIoU %.2f', mode, miou)
    return {'miou': miou, 'per_class_iou': per_class}
