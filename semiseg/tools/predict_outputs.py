"""Writing the prediction tool's outputs: per image a palette PNG of the class ids, optionally an
overlay with a class legend and the float16 scores; and the check that no two inputs write one file.

Part of `semiseg.tools.predict`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from semiseg.utils.cli import UsageError
from semiseg.utils.imaging import colorize
from semiseg.utils.labels import IGNORE_INDEX

from ._common import save_label_png
from .predict_inputs import Item

OVERLAY_ALPHA = 0.5


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
