"""What the checkpoint tools share: the run config they work for, the model with a checkpoint loaded,
palette PNGs, and one-line error messages.

Used by `semiseg.tools.predict` and `semiseg.tools.eval`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from semiseg.api import load_checkpoint
from semiseg.data.build import dataset_dir
from semiseg.experiments.io import load_config
from semiseg.experiments.registry import get_runs
from semiseg.models.builder import build_segmentor
from semiseg.utils.checkpoint_io import check_checkpoint_file
from semiseg.utils.run_files import CONFIG_FILE

# what a tool reports in one line (CheckpointError, DataError, TextEmbeddingError, UnknownModel and
# UnknownExperiment are subclasses of these)
TOOL_ERRORS = (KeyError, ValueError, RuntimeError, OSError)
RUN_CONFIG_KEYS = ('dataset', 'data_root', 'nclass', 'model', 'crop_size', 'eval_mode')


def one_line(err: BaseException) -> str:
    """An exception's message on one line (KeyError without its quotes)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    return ' '.join(str(text).split()) or type(err).__name__


def select_run_config(exp: int, run: int, data_root: str | None = None) -> dict[str, Any]:
    """The config of run `run` of experiment `exp` (ValueError naming the valid run range)."""
    runs = get_runs(exp, data_root=data_root)
    if not 0 <= run < len(runs):
        raise ValueError(f'experiment {exp} has runs 0..{len(runs) - 1}, not {run}')
    return runs[run]


def read_run_config(path: Path) -> dict[str, Any]:
    """A run folder's config.yaml (ValueError when it is missing or lacks what a model needs)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f'run config {path} is a folder; pass the config.yaml file inside a run folder'
                         + (f' ({path / CONFIG_FILE})' if (path / CONFIG_FILE).is_file() else ''))
    if not path.is_file():
        raise ValueError(f'run config {path} not found; pass a run folder\'s config.yaml')
    try:
        cfg = load_config(path)
    except Exception as err:   # noqa: BLE001 - yaml errors of any kind become one line
        raise ValueError(f'cannot read run config {path}: {one_line(err)}') from err
    missing = [k for k in RUN_CONFIG_KEYS if k not in cfg]
    if missing:
        raise ValueError(f'{path} is not a run config: it lacks {", ".join(missing)}')
    return cfg


def prepare_dataset_files(cfg: dict[str, Any]) -> None:
    """Make the files a model build reads from the dataset folder available: the toy dataset (exp 0)
    is generated on demand, with its text embedding."""
    from semiseg.data.datasets import ensure_generated
    ensure_generated(cfg['dataset'], dataset_dir(cfg))


def load_run_model(cfg: dict[str, Any], checkpoint: Path, device: torch.device,
                   trust: bool = False, weights: str = 'model') -> torch.nn.Module:
    """The run's model (no pretrained download) with `checkpoint` loaded, on `device`, in eval mode.

    The checkpoint may be ours or a release's (`semiseg.api.load_checkpoint`); one of another model
    raises CheckpointError naming the mismatching keys. `weights='ema'`: a UniMatch V2 run's EMA teacher.
    """
    checkpoint = Path(checkpoint).expanduser()
    check_checkpoint_file(checkpoint)   # before the (slow) model build
    prepare_dataset_files(cfg)
    model = build_segmentor(cfg, pretrained=False)
    load_checkpoint(model, checkpoint, trust=trust, weights=weights)
    return model.to(device).eval()


def save_label_png(labels: np.ndarray, palette: np.ndarray, path: Path) -> None:
    """(H, W) label ids as a palette PNG (mode P, the dataset's colours; putpalette turns L into P)."""
    png = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    png.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    png.save(path)


def add_checkpoint_arguments(parser) -> None:
    """--checkpoint, --weights and --trust-checkpoint, as every checkpoint tool has them."""
    parser.add_argument('--checkpoint', type=Path, required=True, help='our latest/best.pth or a release checkpoint')
    parser.add_argument('--weights', choices=('model', 'ema'), default='model',
                        help="'ema': the EMA teacher of a UniMatch V2 run (what its paper reports)")
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a checkpoint that needs full unpickling (can run code from the file)')
