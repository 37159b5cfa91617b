"""Predict segmentation masks for any images with a trained run's model.

    python -m semiseg.tools.predict --exp 40 --run 0 --checkpoint exp/exp-40/<run>/best.pth \\
        --out preds/ photos/ more.jpg list.txt [--overlay] [--logits] [--mode MODE] [--stride S]
        [--batch-size 4] [--precision fp32|bf16] [--device auto|cpu|cuda] [--recursive]
        [--data-root R] [--weights model|ema] [--trust-checkpoint]
    python -m semiseg.tools.predict --config exp/exp-40/<run>/config.yaml --checkpoint ... --out ...

Inputs: image files; folders (the images directly inside, sorted; with --recursive also in
subfolders, whose structure is kept under --out); `.txt` list files (one image path per line,
relative paths from the list's folder, blank lines and `#` comments skipped).

Outputs in --out, per image `<stem>`: `<stem>.png`, the predicted class ids as a palette PNG of the
input image's size (the dataset's colours); with --overlay `<stem>_overlay.png`, the image with the
mask blended in and a legend of the classes it shows; with --logits `<stem>.npy`, float16
(classes, H, W) scores as the mode returns them (logits, or summed window softmaxes for the
sliding-window modes), at the input size.

Images are prepared exactly as the run's validation images (`semiseg.data.semi_dataset`): RGB,
resized with `val_resize` when the run has `img_scale`, ImageNet-normalised. The run's evaluation
mode is the default (`eval_mode`, `crop_size`, `stride`, `eval_size_multiple`); `--mode` picks
another. Scores computed at another size than the input's (a resized input) come back to it by
bilinear resizing with align_corners=True, as the zegclip sliding window does for validation
(`semiseg.evaluation.inference`); `center_crop` predicts only its central crop (label 255 and NaN
scores elsewhere). `--batch-size` batches images of equal size for models that declare per-image
eval outputs (`eval_batch_independent`); any other model (AllSpark's eval attention mixes the
images of a batch) predicts one image at a time.

Exit codes (`semiseg.utils.cli`): 0 all images written; 1 some images failed (each named on one line
as it fails, and listed at the end; the others are written); 2 nothing done: unknown experiment /
run, unreadable run config, missing, unfitting or not-a-checkpoint checkpoint, an empty folder, a
missing list file, two inputs that would write the same output, an --out that is a file or would be
read back as input (the input folder itself, or inside it with --recursive); 3 stopped (SIGTERM,
Ctrl-C): the images written so far stay; 130 a second Ctrl-C.

Modules: `predict_inputs` (reading inputs), `predict_inference` (predicting), `predict_outputs`
(writing outputs); this one is the command line.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from semiseg.engine.distributed import resolve_device
from semiseg.engine.signals import stop_reason, stop_requested, stop_signal_handlers
from semiseg.evaluation.inference import MODES, eval_batch_independent
from semiseg.experiments.config import dataset_folder
from semiseg.utils.cli import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    UsageError,
    check_output_dir,
    output_dir,
)

from ._common import TOOL_ERRORS, add_checkpoint_arguments, load_run_model, one_line, read_run_config, select_run_config
from .predict_inference import inference_settings, run_predictions
from .predict_inputs import resolve_inputs
from .predict_outputs import check_collisions

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog='python -m semiseg.tools.predict',
                description='Predict segmentation masks for images with a trained run\'s model.')
    p.add_argument('inputs', nargs='+', help='image files, folders of images, or .txt lists of image paths')
    p.add_argument('--exp', type=int, help='experiment id (with --run)')
    p.add_argument('--run', type=int, help='run index within the experiment')
    p.add_argument('--config', type=Path, help="a run folder's config.yaml (instead of --exp/--run)")
    add_checkpoint_arguments(p)
    p.add_argument('--out', type=output_dir, required=True, help='output folder (created)')
    p.add_argument('--overlay', action='store_true', help='also write <stem>_overlay.png with a class legend')
    p.add_argument('--logits', action='store_true', help='also write <stem>.npy float16 scores (N, H, W)')
    p.add_argument('--mode', choices=MODES, help="inference mode (default: the run's eval_mode)")
    p.add_argument('--stride', type=float,
                   help='sliding-window stride in pixels (or a fraction of the crop if < 1) for the strided modes')
    p.add_argument('--batch-size', type=int, default=1, help='images of equal size predicted together')
    p.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32', help='bf16: autocast')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto')
    p.add_argument('--recursive', action='store_true', help='also read images in subfolders of input folders')
    p.add_argument('--data-root', help='folder holding the datasets, for the text embeddings of vision-language '
                   "models (default: SEMISEG_DATA or ~/data with --exp, the config's data_root with --config)")
    return p


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.config is not None:
        if args.exp is not None or args.run is not None:
            raise UsageError('give either --config or --exp/--run, not both')
        cfg = read_run_config(args.config)
        if args.data_root:   # the run was trained where the data lives elsewhere
            cfg = {**cfg, 'data_root': dataset_folder(cfg['dataset'], args.data_root)}
        return cfg
    if args.exp is None or args.run is None:
        raise UsageError('name the run: --exp E --run R, or --config RUN_DIR/config.yaml')
    return select_run_config(args.exp, args.run, args.data_root)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 all written, 1 some images failed, 2 nothing done)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='[%(asctime)s][%(levelname)s] %(message)s')
    try:
        if args.batch_size < 1:
            raise UsageError(f'--batch-size must be at least 1, got {args.batch_size}')
        cfg = _run_config(args)
        how = inference_settings(cfg, args.mode, args.stride, args.precision)
        items = resolve_inputs(args.inputs, args.recursive)
        out = check_output_dir(args.out, '--out', [Path(a) for a in args.inputs], args.recursive)
        check_collisions(items, out, args.overlay, args.logits)
        device = resolve_device(args.device)
        model = load_run_model(cfg, args.checkpoint, device, trust=args.trust_checkpoint, weights=args.weights)
        out.mkdir(parents=True, exist_ok=True)
    except TOOL_ERRORS as err:
        print(f'error: {one_line(err)}', file=sys.stderr)
        return EXIT_USAGE
    batch_size = args.batch_size
    if batch_size > 1 and not eval_batch_independent(model):
        logger.warning('%s: its eval output for an image may depend on the other images of a batch '
                       '(e.g. AllSpark\'s attention); predicting one image at a time', cfg['model'])
        batch_size = 1
    try:
        with stop_signal_handlers():   # a stop ends the loop after the current batch
            failures = run_predictions(model, cfg, items, out, how, device, batch_size, args.overlay, args.logits,
                                       should_stop=stop_requested)
    except KeyboardInterrupt:
        print('aborted', file=sys.stderr)
        return EXIT_ABORTED
    if stop_requested():
        print(f'interrupted ({stop_reason()}); the images written so far are in {out}', file=sys.stderr)
        return EXIT_INTERRUPTED
    written = len(items) - len(failures)
    print(f'{cfg.get("name", "run")}: {how.mode}, {written} of {len(items)} image(s) predicted into {out}')
    if failures:
        print(f'{len(failures)} image(s) failed:', file=sys.stderr)
        for path, reason in failures:
            print(f'  {path}: {reason}', file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
