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

Exit codes: 0 all images written; 1 some images failed (each named on one line as it fails, and
listed at the end; the others are written); 2 nothing done: unknown experiment / run, unreadable
run config, missing or unfitting checkpoint, an empty folder, a missing list file, two inputs that
would write the same output.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from tqdm import tqdm

from semiseg.api import predict
from semiseg.data.build import dataset_dir
from semiseg.data.datasets import dataset_info
from semiseg.data.transforms import normalize, val_resize
from semiseg.engine.distributed import resolve_device
from semiseg.engine.fastpath import autocast
from semiseg.evaluation.evaluate import STRIDED_MODES
from semiseg.evaluation.inference import MODES, eval_batch_independent
from semiseg.experiments.config import dataset_folder
from semiseg.utils.errors import OneLineParser
from semiseg.utils.imaging import center_crop_box, colorize
from semiseg.utils.labels import IGNORE_INDEX

from ._common import (
    TOOL_ERRORS,
    add_checkpoint_arguments,
    load_run_model,
    one_line,
    read_run_config,
    save_label_png,
    select_run_config,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
LIST_SUFFIX = '.txt'
# colour modes PIL converts to RGB without choosing anything; high-bit-depth modes (I;16, I, F) are
# refused: mapping them to 8 bits needs a scaling the file does not state
RGB_CONVERTIBLE = ('RGB', '1', 'L', 'LA', 'La', 'P', 'PA', 'RGBA', 'RGBa', 'RGBX', 'CMYK', 'YCbCr', 'LAB', 'HSV')
OVERLAY_ALPHA = 0.5


class UsageError(ValueError):
    """Bad arguments or inputs: one line, exit code 2, nothing written."""


class BadImage(ValueError):
    """One input image that cannot be predicted; the others go on."""


@dataclass(frozen=True)
class Item:
    """One input image and the output stem it writes (relative to --out, no suffix)."""

    path: Path
    stem: Path


# ----------------------------------------------------------------------------- inputs
def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob('*') if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _list_file(path: Path) -> list[Item]:
    try:
        lines = path.read_text(encoding='utf-8').splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f'cannot read list file {path}: {one_line(err)}') from err
    items = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith('#'):
            image = Path(line).expanduser()
            image = image if image.is_absolute() else path.parent / image
            items.append(Item(image, Path(image.stem)))
    if not items:
        raise UsageError(f'list file {path} names no images (one path per line)')
    return items


def resolve_inputs(inputs: list[str], recursive: bool = False) -> list[Item]:
    """Every image the arguments name, in order (UsageError for an empty folder or list).

    A path that does not exist stays in the list: it fails on its own, like an unreadable image.
    """
    items: list[Item] = []
    for arg in inputs:
        path = Path(arg).expanduser()
        if path.is_dir():
            images = _folder_images(path, recursive)
            if not images:
                raise UsageError(f'folder {path} holds no images ({", ".join(IMAGE_SUFFIXES)})'
                                 + ('' if recursive else '; --recursive also reads subfolders'))
            items += [Item(p, p.relative_to(path).with_suffix('')) for p in images]
        elif path.suffix.lower() == LIST_SUFFIX:
            if not path.is_file():
                raise UsageError(f'list file {path} not found')
            items += _list_file(path)
        else:
            items.append(Item(path, Path(path.stem)))
    if not items:
        raise UsageError('no input images given')
    return items


def output_paths(item: Item, out: Path, overlay: bool, logits: bool) -> list[Path]:
    """The files one image writes."""
    base = out / item.stem
    paths = [base.with_name(base.name + '.png')]
    if overlay:
        paths.append(base.with_name(base.name + '_overlay.png'))
    if logits:
        paths.append(base.with_name(base.name + '.npy'))
    return paths


def check_collisions(items: list[Item], out: Path, overlay: bool, logits: bool) -> None:
    """UsageError when two inputs would write the same file (same stem from two folders, x.jpg and x.png)."""
    seen: dict[Path, Path] = {}
    for item in items:
        for path in output_paths(item, out, overlay, logits):
            if path in seen and seen[path] != item.path:
                raise UsageError(f'inputs {seen[path]} and {item.path} would both write {path}; '
                                 'rename one or predict them into different --out folders')
            seen[path] = item.path


# ----------------------------------------------------------------------------- images
def load_image(path: Path) -> Image.Image:
    """The image as RGB (BadImage naming the problem: missing, unreadable, not convertible)."""
    if not path.is_file():
        raise BadImage('not found' if not path.exists() else 'not a file')
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImage(f'cannot read it as an image ({one_line(err)})') from err
    if img.mode not in RGB_CONVERTIBLE:
        raise BadImage(f'mode {img.mode} (e.g. 16-bit or float grey) has no defined 8-bit RGB conversion; '
                       'save it as an 8-bit RGB or grey image')
    return img.convert('RGB')


def prepare(img: Image.Image, cfg: dict[str, Any]) -> torch.Tensor:
    """(3, h, w) float32 input, as the run's validation set prepares an image."""
    if cfg.get('img_scale'):
        img = val_resize(img, tuple(int(v) for v in cfg['img_scale']))
    return normalize(img)


# ----------------------------------------------------------------------------- inference
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


# ----------------------------------------------------------------------------- outputs
def overlay_image(img: Image.Image, labels: np.ndarray, palette: np.ndarray,
                  class_names: tuple[str, ...] | list[str], alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The image with the mask colours blended in (label 255 left clear), and to its right a legend
    of the classes present (colour swatch and name, by class id)."""
    rgb = np.asarray(img.convert('RGB'), dtype=np.float32)
    colour = colorize(labels, palette).astype(np.float32)
    blend = np.where((labels != IGNORE_INDEX)[..., None], rgb * (1 - alpha) + colour * alpha, rgb)
    base = Image.fromarray(np.clip(blend + 0.5, 0, 255).astype(np.uint8))
    present = [int(c) for c in np.unique(labels) if c != IGNORE_INDEX]
    if not present:
        return base
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(base)
    names = [class_names[c] if c < len(class_names) else f'class_{c}' for c in present]
    line, swatch, pad = 14, 10, 4
    text_w = max(int(probe.textlength(n, font=font)) for n in names)
    width = pad + swatch + pad + text_w + pad
    height = max(base.height, pad + line * len(present) + pad)
    canvas = Image.new('RGB', (base.width + width, height), (255, 255, 255))
    canvas.paste(base, (0, 0))
    draw = ImageDraw.Draw(canvas)
    rows = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    for row, (cls, name) in enumerate(zip(present, names)):
        x, y = base.width + pad, pad + row * line
        fill = tuple(int(v) for v in rows[cls]) if cls < len(rows) else (255, 255, 255)
        draw.rectangle([x, y + 1, x + swatch, y + 1 + swatch], fill=fill, outline=(0, 0, 0))
        draw.text((x + swatch + pad, y), name, fill=(0, 0, 0), font=font)
    return canvas


def write_outputs(item: Item, out: Path, img: Image.Image, scores: torch.Tensor, labels: torch.Tensor,
                  palette: np.ndarray, class_names: tuple[str, ...], overlay: bool, logits: bool) -> None:
    """The PNG (and overlay / scores) of one image."""
    paths = output_paths(item, out, overlay, logits)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    label_map = labels.cpu().numpy()
    save_label_png(label_map, palette, paths[0])
    if overlay:
        overlay_image(img, label_map, palette, class_names).save(paths[1])
    if logits:
        np.save(paths[-1], scores.cpu().numpy().astype(np.float16))


# ----------------------------------------------------------------------------- loop
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
                    logits: bool = False) -> list[tuple[Path, str]]:
    """Predict and write every item; returns the (image, reason) of those that failed."""
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
                write_outputs(pending.item, out, pending.img, scores[k], labels[k], info.palette,
                              info.class_names, overlay, logits)
            progress.update(len(batch))
    return failures


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog='python -m semiseg.tools.predict',
                description='Predict segmentation masks for images with a trained run\'s model.')
    p.add_argument('inputs', nargs='+', help='image files, folders of images, or .txt lists of image paths')
    p.add_argument('--exp', type=int, help='experiment id (with --run)')
    p.add_argument('--run', type=int, help='run index within the experiment')
    p.add_argument('--config', type=Path, help="a run folder's config.yaml (instead of --exp/--run)")
    add_checkpoint_arguments(p)
    p.add_argument('--out', type=Path, required=True, help='output folder (created)')
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
        out = args.out.expanduser()
        check_collisions(items, out, args.overlay, args.logits)
        device = resolve_device(args.device)
        model = load_run_model(cfg, args.checkpoint, device, trust=args.trust_checkpoint, weights=args.weights)
        out.mkdir(parents=True, exist_ok=True)
    except TOOL_ERRORS as err:
        print(f'error: {one_line(err)}', file=sys.stderr)
        return 2
    batch_size = args.batch_size
    if batch_size > 1 and not eval_batch_independent(model):
        logger.warning('%s: its eval output for an image may depend on the other images of a batch '
                       '(e.g. AllSpark\'s attention); predicting one image at a time', cfg['model'])
        batch_size = 1
    try:
        failures = run_predictions(model, cfg, items, out, how, device, batch_size, args.overlay, args.logits)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    written = len(items) - len(failures)
    print(f'{cfg.get("name", "run")}: {how.mode}, {written} of {len(items)} image(s) predicted into {out}')
    if failures:
        print(f'{len(failures)} image(s) failed:', file=sys.stderr)
        for path, reason in failures:
            print(f'  {path}: {reason}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
