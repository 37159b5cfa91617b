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

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
