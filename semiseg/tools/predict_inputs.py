"""Reading the prediction tool's inputs: image files, folders of images and `.txt` lists, each image
as RGB and prepared exactly as the run's validation images (`semiseg.data.semi_dataset`).

Part of `semiseg.tools.predict` (inputs here, `predict_inference` predicts, `predict_outputs` writes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from semiseg.data.transforms import normalize, val_resize
from semiseg.utils.cli import UsageError
from semiseg.utils.textfiles import TextFileError, read_lines

from ._common import one_line

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
LIST_SUFFIX = '.txt'
# colour modes PIL converts to RGB without choosing anything; high-bit-depth modes (I;16, I, F) are
# refused: mapping them to 8 bits needs a scaling the file does not state
RGB_CONVERTIBLE = ('RGB', '1', 'L', 'LA', 'La', 'P', 'PA', 'RGBA', 'RGBa', 'RGBX', 'CMYK', 'YCbCr', 'LAB', 'HSV')


class BadImage(ValueError):
    """One input image that cannot be predicted; the others go on."""


@dataclass(frozen=True)
class Item:
    """One input image and the output stem it writes (relative to --out, no suffix)."""

    path: Path
    stem: Path


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob('*') if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _list_file(path: Path) -> list[Item]:
    try:
        lines = read_lines(path, 'list file')   # UTF-8 with or without BOM, any line ending
    except TextFileError as err:   # names the file and the line already
        raise UsageError(str(err)) from None
    except OSError as err:
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
