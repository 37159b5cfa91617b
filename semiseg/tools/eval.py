"""Evaluate a checkpoint on a run's validation set with the run's evaluation mode.

    python -m semiseg.tools.eval --exp 40 --run 0 --checkpoint PATH [--pred-dir DIR] [--save-logits]
                                 [--data-root R] [--device auto|cpu|cuda] [--weights model|ema]
                                 [--trust-checkpoint]

The checkpoint may be ours (`latest.pth` / `best.pth`) or the SemiVL release's (`best.pth`, DDP
keys); `semiseg.models.checkpoint.load_checkpoint` reads both. Prints per-class IoU and mIoU;
with --pred-dir, writes one palette PNG per validation image (argmax, at the scored resolution)
and, with --save-logits, its float16 logits as .npy next to it.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from semiseg.data.build import dataset_dir
from semiseg.data.datasets import dataset_info
from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.splits import missing_split_hint, read_split, split_files
from semiseg.engine.distributed import resolve_device
from semiseg.engine.loaders import build_eval_loader
from semiseg.evaluation import evaluate
from semiseg.evaluation.inference import predict
from semiseg.utils.cli import EXIT_USAGE, OneLineParser, UsageError, check_output_dir, output_dir

from ._common import (
    TOOL_ERRORS,
    add_checkpoint_arguments,
    load_run_model,
    one_line,
    prepare_dataset_files,
    save_label_png,
    select_run_config,
)

logger = logging.getLogger(__name__)


def val_dataset(cfg: dict) -> Dataset:
    """The validation set of a run config alone (the training lists need not exist)."""
    prepare_dataset_files(cfg)
    root = dataset_dir(cfg)
    info = dataset_info(cfg['dataset'], root)
    aug = AugConfig.from_cfg(cfg, reduce_zero_label=info.reduce_zero_label)
    entries = read_split(split_files(root, cfg['split'])['val'], missing_split_hint(cfg['dataset'], root))
    return SemiDataset(root, entries, 'val', aug)


class PredictionWriter:
    """A `predict_fn` for `semiseg.evaluation.evaluate` that also saves what it predicts.

    The eval loader is unshuffled with batch 1, so the k-th call scores validation item k.
    """

    def __init__(self, ids: list[str], out_dir: Path, palette: np.ndarray, save_logits: bool) -> None:
        self.ids, self.out_dir, self.palette, self.save_logits = ids, Path(out_dir), palette, save_logits
        self.count = 0

    def __call__(self, model, images, mode, crop_size, **kwargs) -> torch.Tensor:
        logits = predict(model, images, mode, crop_size, **kwargs)
        stem = self.out_dir / Path(self.ids[self.count]).with_suffix('')
        stem.parent.mkdir(parents=True, exist_ok=True)
        save_label_png(logits[0].argmax(0).to(torch.uint8).cpu().numpy(), self.palette, stem.with_suffix('.png'))
        if self.save_logits:
            np.save(stem.with_suffix('.npy'), logits[0].float().cpu().numpy().astype(np.float16))
        self.count += 1
        return logits


def evaluate_checkpoint(cfg: dict, checkpoint: Path, device: torch.device, pred_dir: Path | None = None,
                        save_logits: bool = False, trust: bool = False, weights: str = 'model') -> dict[str, Any]:
    """mIoU of `checkpoint` on cfg's val set: {'miou', 'per_class_iou': {name: iou}} (percent)."""
    model = load_run_model(cfg, checkpoint, device, trust=trust, weights=weights)
    dataset = val_dataset(cfg)
    info = dataset_info(cfg['dataset'], dataset_dir(cfg))
    loader = build_eval_loader(dataset, distributed=False)
    writer = None
    if pred_dir is not None:
        ids = [str(dataset[i]['id']) for i in range(len(dataset))] if not hasattr(dataset, 'entries') \
            else [e.image for e in dataset.entries]
        writer = PredictionWriter(ids, pred_dir, info.palette, save_logits)
    res = evaluate(model, loader, cfg, device, predict_fn=writer)
    names = list(info.class_names)
    return {'miou': float(res['miou']),
            'per_class_iou': {names[i] if i < len(names) else f'class_{i}': float(v)
                              for i, v in enumerate(res['per_class_iou'])}}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.eval',
                           description='Evaluate a checkpoint on the validation set of a run.')
    parser.add_argument('--exp', type=int, required=True, help='experiment id (see experiments.py --list)')
    parser.add_argument('--run', type=int, required=True, help='run index within the experiment')
    add_checkpoint_arguments(parser)
    parser.add_argument('--pred-dir', type=output_dir, help='write palette PNG predictions here')
    parser.add_argument('--save-logits', action='store_true', help='also write float16 logits (.npy) to --pred-dir')
    parser.add_argument('--data-root', help='folder holding the datasets (default: SEMISEG_DATA or ~/data)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(asctime)s][%(levelname)s] %(message)s')
    if args.save_logits and args.pred_dir is None:
        parser.error('--save-logits needs --pred-dir')
    try:
        if args.pred_dir is not None:
            args.pred_dir = check_output_dir(args.pred_dir, '--pred-dir')
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = select_run_config(args.exp, args.run, args.data_root)
        res = evaluate_checkpoint(cfg, args.checkpoint.expanduser(), resolve_device(args.device),
                                  args.pred_dir, args.save_logits, args.trust_checkpoint, args.weights)
    except TOOL_ERRORS as e:
        print(f'error: {one_line(e)}', file=sys.stderr)
        return 1
    print(f'exp {args.exp} run {args.run} ({cfg["name"]}), {cfg["eval_mode"]}, checkpoint {args.checkpoint}')
    for i, (name, iou) in enumerate(res['per_class_iou'].items()):
        print(f'Class [{i} {name}] IoU: {iou:.2f}')
    print(f'mIoU: {res["miou"]:.2f}')
    if args.pred_dir is not None:
        print(f'predictions written to {args.pred_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
