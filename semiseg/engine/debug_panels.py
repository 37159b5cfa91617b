"""Debug figures of one training step, from `StepResult.visuals` (google-research/semivl
`semivl.py`, the debug figure of each epoch's first iteration).

The release's grid has rows Image / Pred / GT-PL (and MC with MaskCLIP consistency) and columns
L, S1, S2, FP. Visual tensors: img_* (B,3,H,W) = ImageNet-normalised images, other (B,C,H,W)
floats = logits (argmax shown), (B,H,W) = label maps (dataset palette colours).
A method may declare its own grid (`Method.visual_layout`, rows of visual keys); keys its layout
does not know are drawn in a generic 4-column grid instead.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from semiseg.methods.base import VISUAL_LAYOUT  # noqa: E402
from semiseg.utils.imaging import colorize, denormalize  # noqa: E402

TITLES = {
    'img_x': 'Image L', 'img_s1': 'Image S1', 'img_s2': 'Image S2', 'img_w': 'Image FP',
    'pred_x': 'Pred L', 'pred_s1': 'Pred S1', 'pred_s2': 'Pred S2', 'pred_fp': 'Pred FP',
    'mask_x': 'GT L', 'pl_s1': 'PL S1', 'pl_s2': 'PL S2', 'pl_fp': 'PL FP',
    'mcc_s1': 'MC S1', 'mcc_s2': 'MC S2', 'mcc_fp': 'MC FP',
    'img_u': 'Image U', 'pred_u': 'Pred U', 'pl_u': 'PL U',
}
Layout = tuple[tuple[str, ...], ...]


def is_image_key(key: str, value: torch.Tensor) -> bool:
    """Images are named img_* (or are 3-channel floats not named pred_*/logits*)."""
    if key.startswith('img'):
        return True
    return value.dim() == 4 and value.shape[1] == 3 and value.is_floating_point() \
        and not key.startswith(('pred', 'logit'))


def to_rgb(key: str, value: torch.Tensor, b: int, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Render sample b of one visual tensor as an RGB array (see module docstring)."""
    t = value[b].detach().cpu()
    if t.dim() == 3 and t.is_floating_point():
        if is_image_key(key, value):
            return denormalize(t.float().numpy())
        return colorize(t.float().argmax(0).numpy(), palette)
    if t.dim() == 2:
        return colorize(t.long().numpy(), palette)
    raise ValueError(f'debug visual {key!r} of shape {tuple(value.shape)} is neither an image (B,3,H,W), '
                     f'logits (B,C,H,W) nor a label map (B,H,W)')


def grid_for(visuals: dict[str, torch.Tensor], layout: Layout = VISUAL_LAYOUT) -> list[list[tuple[str, str] | None]]:
    """(key, title) cells of `layout` (default: the release's) when it covers every key (empty rows
    and columns dropped), else a 4-column grid in insertion order."""
    if set(visuals) <= {k for row in layout for k in row if k}:
        grid = [[(k, TITLES.get(k, k)) if k in visuals else None for k in row] for row in layout]
        grid = [row for row in grid if any(row)]
        keep = [j for j in range(len(grid[0])) if any(row[j] for row in grid)]
        return [[row[j] for j in keep] for row in grid]
    cells: list[tuple[str, str] | None] = [(k, TITLES.get(k, k)) for k in visuals]
    cells += [None] * (-len(cells) % 4)
    return [cells[i:i + 4] for i in range(0, len(cells), 4)]


def render_panel(visuals: dict[str, torch.Tensor], b: int, palette: Sequence[Sequence[int]],
                 layout: Layout = VISUAL_LAYOUT) -> np.ndarray:
    """Draw sample b's panel; returns the figure as an (H,W,3) uint8 array."""
    grid = grid_for(visuals, layout)
    rows, cols = len(grid), max(len(r) for r in grid)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows), squeeze=False)
    try:
        for r, row in enumerate(grid):
            for c in range(cols):
                ax = axes[r][c]
                ax.axis('off')
                cell = row[c] if c < len(row) else None
                if cell is None:
                    continue
                key, title = cell
                ax.imshow(to_rgb(key, visuals[key], b, palette))
                ax.set_title(title, fontsize=8)
        fig.subplots_adjust(hspace=0.1, wspace=0, top=0.95, bottom=0, left=0, right=1)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def save_panels(visuals: dict[str, torch.Tensor], out_dir: Path, iteration: int, rank: int,
                palette: Sequence[Sequence[int]], max_images: int,
                layout: Layout = VISUAL_LAYOUT) -> list[tuple[Path, np.ndarray]]:
    """Write `debug/{iteration:07d}_{rank}-{b}.png` for the first `max_images` samples."""
    if not visuals:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = min(max_images, next(iter(visuals.values())).shape[0])
    written = []
    for b in range(n):
        image = render_panel(visuals, b, palette, layout)
        path = out_dir / f'{iteration:07d}_{rank}-{b}.png'
        plt.imsave(path, image)
        written.append((path, image))
    return written
