"""A SummaryWriter that exists on rank 0 only; other ranks get the same calls as no-ops."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class TensorBoard:
    """`train/*`, `eval/*` scalars and debug images in the run folder (rank 0)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(run_dir))

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for k, v in values.items():
            self._writer.add_scalar(f'{prefix}/{k}', float(v), step)

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        if self._writer is not None:
            self._writer.add_image(tag, image_hwc, step, dataformats='HWC')

    def hparams(self, cfg: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The run's settings and final metrics for tensorboard's HParams view, so `tensorboard
        --logdir exp/exp-E` compares the runs of an experiment side by side. Written into the run's
        own event file (not a sub-run, unlike SummaryWriter.add_hparams)."""
        if self._writer is None:
            return
        from torch.utils.tensorboard.summary import hparams
        experiment, start, end = hparams(run_hparams(cfg), metrics)
        for summary in (experiment, start, end):
            self._writer.file_writer.add_summary(summary)
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def run_hparams(cfg: dict[str, Any]) -> dict[str, Any]:
    """What HParams shows of a run: the config flattened, the seed always (a config leaves it out at
    its default 0), and a file experiment's swept values also under `sweep.<key>`, so the runs of a
    sweep can be filtered by swept value and seed."""
    from .options import option
    return {**flat_hparams(cfg), 'seed': option(cfg, 'seed')}


def flat_hparams(cfg: dict[str, Any], prefix: str = '') -> dict[str, Any]:
    """A config as tensorboard hparams: nested keys dotted, lists and None as text."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flat_hparams(value, f'{name}.'))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out
