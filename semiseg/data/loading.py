"""Reading one sample from disk: RGB image, raw label-id mask, ADE's zero-label reduction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from semiseg.data.errors import DataError
from semiseg.data.splits import SplitEntry
from semiseg.utils.labels import IGNORE_INDEX


def _open(path: Path, kind: str, entry: SplitEntry) -> Image.Image:
    if not path.is_file():
        raise DataError(f'{kind} {path} not found (listed at {entry.where}); check data_root and '
                        'the split list')
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f'cannot read {kind} {path} (listed at {entry.where}): {err}; the file is '
                        'corrupt or not an image, replace it') from err
    return img


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """ADE's label shift, as the release does it: 0 -> 255, then -1, then 254 -> 255.

    Label 0 ('other') and the ignore id 255 both end up 255; every class id drops by one.
    """
    out = mask.astype(np.uint8, copy=True)
    out[out == 0] = IGNORE_INDEX
    out = out - np.uint8(1)
    out[out == IGNORE_INDEX - 1] = IGNORE_INDEX
    return out


def check_labels(mask: np.ndarray, nclass: int, path: Path, entry: SplitEntry) -> None:
    """Label ids must be class ids 0..nclass-1 or 255 (ignore); anything else names the file.
    `mask` is uint8 (load_sample): a bincount finds its values ~3x faster than np.unique."""
    values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    bad = values[(values >= nclass) & (values != IGNORE_INDEX)]
    if bad.size:
        shown = ', '.join(str(int(v)) for v in bad[:8]) + (', ...' if bad.size > 8 else '')
        raise DataError(f'mask {path} (listed at {entry.where}) holds label ids {shown}, outside 0..{nclass - 1} '
                        f'and 255 (ignore); fix the mask, or nclass / classes.txt if the dataset has more classes')


def load_sample(data_root: Path, entry: SplitEntry, zero_label_reduction: bool = False,
                nclass: int | None = None) -> tuple[Image.Image, Image.Image]:
    """The RGB image and the label mask (mode 'L', raw label ids) of one split entry.

    With `nclass`, label ids outside 0..nclass-1 and 255 are an error naming the file."""
    img = _open(data_root / entry.image, 'image', entry).convert('RGB')
    mask_path = data_root / entry.mask
    raw = _open(mask_path, 'mask', entry)
    if raw.mode not in ('P', 'L', 'I', 'I;16', '1'):
        raise DataError(f'mask {mask_path} (listed at {entry.where}) has mode {raw.mode!r}; masks '
                        'must be single-channel label-id PNGs (mode L or P), not colour images')
    mask = np.array(raw)
    if mask.max(initial=0) > 255:
        raise DataError(f'mask {mask_path} (listed at {entry.where}) holds label ids above 255; '
                        'store label ids 0..254 and 255 for ignore')
    mask = mask.astype(np.uint8)
    if mask.shape != (img.height, img.width):
        raise DataError(f'mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image '
                        f'{data_root / entry.image} is {img.width}x{img.height} (listed at '
                        f'{entry.where}); every mask must have its image\'s size')
    if zero_label_reduction:
        mask = reduce_zero_label(mask)
    if nclass is not None:
        check_labels(mask, nclass, mask_path, entry)
    return img, Image.fromarray(mask)
