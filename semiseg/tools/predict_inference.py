"""Predicting: the run's evaluation settings (or the ones asked for), one batch of equally sized
images through the model, and the loop that reads, predicts and writes every input image.

Part of `semiseg.tools.predict`; a bad image or a failed batch is one failure, the others go on.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from semiseg.api import predict
from semiseg.data.build import dataset_dir
from semiseg.data.datasets import dataset_info
from semiseg.engine.fastpath import autocast
from semiseg.evaluation.evaluate import STRIDED_MODES
from semiseg.evaluation.inference import MODES
from semiseg.utils.cli import UsageError
from semiseg.utils.imaging import center_crop_box
from semiseg.utils.labels import IGNORE_INDEX

from ._common import one_line
from .predict_inputs import BadImage, Item, load_image, prepare
from .predict_outputs import write_outputs


@dataclass(frozen=True)
class Inference:
    """How the model is applied (the run's evaluation settings unless overridden)."""

    mode: str
    crop_size: int
    stride: float | int | None
    size_multiple: int | None
    precision: str = 'fp32'


def inference_settings(cfg: dict[str, Any], mode: str | None = None, stride: float | None = None,
                       precision: str = 'fp32') -> Inference:
    """The run's evaluation mode, crop, stride and size multiple; `mode` / `stride` override them."""
    mode = mode or cfg['eval_mode']
    if mode not in MODES:
        raise UsageError(f'unknown mode {mode!r}; choose one of {", ".join(MODES)}')
    if stride is None and mode in STRIDED_MODES:
        stride = cfg.get('stride')
    if stride is not None:
        if stride <= 0:
            raise UsageError(f'--stride must be positive, got {stride}')
        stride = int(stride) if stride >= 1 else float(stride)   # pixels, or a fraction of the crop
    if mode == 'zegclip_sliding_window' and stride is None:
        raise UsageError('mode zegclip_sliding_window needs a stride and the run config has none; '
                         'pass --stride (the SemiVL release uses 426 for 512 crops)')
    return Inference(mode, int(cfg['crop_size']), stride, cfg.get('eval_size_multiple'), precision)


@torch.no_grad()
def predict_batch(model: torch.nn.Module, images: torch.Tensor, size: tuple[int, int],
                  how: Inference) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (B, N, H, W) float32 at the input size `size`, labels (B, H, W) uint8) for a batch of
    equally sized prepared images (B, 3, h, w); labels are 255 where the mode predicts nothing."""
    with autocast(how.precision, images.device):
        scores = predict(model, images, how.mode, how.crop_size, stride=how.stride, out_size=size,
                         size_multiple=how.size_multiple)
    scores = scores.float()
    valid = None
    if how.mode == 'center_crop':   # scores of the central crop: put them where they belong
        h, w = images.shape[-2:]
        top, left, ch, cw = center_crop_box(h, w, how.crop_size)
        canvas = scores.new_zeros(scores.shape[0], scores.shape[1], h, w)
        canvas[:, :, top:top + ch, left:left + cw] = scores
        valid = torch.zeros(scores.shape[0], 1, h, w, device=scores.device)
        valid[:, :, top:top + ch, left:left + cw] = 1
        scores = canvas
    if tuple(scores.shape[-2:]) != tuple(size):
        scores = F.interpolate(scores, size=size, mode='bilinear', align_corners=True)
        if valid is not None:
            valid = F.interpolate(valid, size=size, mode='nearest')
    labels = scores.argmax(dim=1).to(torch.uint8)
    if valid is not None:
        keep = valid[:, 0] > 0
        labels[~keep] = IGNORE_INDEX
        scores = scores.masked_fill(~keep[:, None], float('nan'))
    return scores, labels


@dataclass
class Pending:
    item: Item
    img: Image.Image
    tensor: torch.Tensor


def batches(items: list[Item], cfg: dict[str, Any], batch_size: int,
            failures: list[tuple[Path, str]], progress: tqdm) -> Iterator[list[Pending]]:
    """Batches of up to `batch_size` loaded images of equal size; bad images go to `failures`."""
    buckets: dict[tuple[int, int], list[Pending]] = {}
    for item in items:
        try:
            img = load_image(item.path)
            tensor = prepare(img, cfg)
        except BadImage as err:
            failures.append((item.path, str(err)))
            tqdm.write(f'error: {item.path}: {err}', file=sys.stderr)
            progress.update(1)
            continue
        bucket = buckets.setdefault(img.size, [])
        bucket.append(Pending(item, img, tensor))
        if len(bucket) == batch_size:
            yield buckets.pop(img.size)
    yield from (b for b in buckets.values() if b)


def run_predictions(model: torch.nn.Module, cfg: dict[str, Any], items: list[Item], out: Path,
                    how: Inference, device: torch.device, batch_size: int = 1, overlay: bool = False,
                    logits: bool = False, should_stop: Callable[[], bool] = lambda: False) -> list[tuple[Path, str]]:
    """Predict and write every item; returns the (image, reason) of those that failed. `should_stop` is
    asked after every batch (a stop request ends the loop there)."""
    info = dataset_info(cfg['dataset'], dataset_dir(cfg))
    failures: list[tuple[Path, str]] = []
    with tqdm(total=len(items), unit='img', desc='predict', disable=None) as progress:
        for batch in batches(items, cfg, batch_size, failures, progress):
            width, height = batch[0].img.size
            images = torch.stack([p.tensor for p in batch]).to(device)
            try:
                scores, labels = predict_batch(model, images, (height, width), how)
            except (RuntimeError, ValueError) as err:   # e.g. out of memory, a size the model rejects
                for pending in batch:
                    failures.append((pending.item.path, f'prediction failed: {one_line(err)}'))
                    tqdm.write(f'error: {pending.item.path}: prediction failed: {one_line(err)}', file=sys.stderr)
                progress.update(len(batch))
                continue
            for k, pending in enumerate(batch):
                try:
                    write_outputs(pending.item, out, pending.img, scores[k], labels[k], info.palette,
                                  info.class_names, overlay, logits)
                except OSError as err:   # e.g. a folder or a file where an output goes, a full disk
                    failures.append((pending.item.path, f'cannot write its output: {one_line(err)}'))
                    tqdm.write(f'error: {pending.item.path}: cannot write its output: {one_line(err)}',
                               file=sys.stderr)
            progress.update(len(batch))
            if should_stop():
                break
    return failures
