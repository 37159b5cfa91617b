"""Run-folder text log, `state.json` / `results.json` writers and a running-mean meter."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from semiseg.utils.files import atomic_write_json
from semiseg.utils.run_files import LOG_FILE, STATE_FILE

LOG_FORMAT = '[%(asctime)s][%(levelname)s] %(message)s'
PACKAGE_LOGGER = 'semiseg'
# tracebacks go to train.log only (the console gets one line), unless show_tracebacks() is called
TRACEBACK_LOGGER = 'semiseg.traceback'
logging.getLogger(TRACEBACK_LOGGER).propagate = False


def attach_file_log(run_dir: Path, filename: str = LOG_FILE) -> logging.Handler:
    """Send every `semiseg.*` log record (INFO and up) to `run_dir/filename`, appending on resume.

    Returns the handler so the caller can detach it (`detach_log`) when training ends.
    """
    handler = logging.FileHandler(Path(run_dir) / filename, mode='a', encoding='utf-8')
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt='%Y-%m-%d %H:%M:%S'))
    handler.setLevel(logging.INFO)
    pkg = logging.getLogger(PACKAGE_LOGGER)
    if pkg.getEffectiveLevel() > logging.INFO or pkg.level == logging.NOTSET:
        pkg.setLevel(logging.INFO)
    pkg.addHandler(handler)
    logging.getLogger(TRACEBACK_LOGGER).addHandler(handler)
    return handler


def detach_log(handler: logging.Handler) -> None:
    logging.getLogger(PACKAGE_LOGGER).removeHandler(handler)
    logging.getLogger(TRACEBACK_LOGGER).removeHandler(handler)
    handler.close()


def show_tracebacks() -> None:
    """Also print failure tracebacks on the console (`experiments.py --verbose`)."""
    tb = logging.getLogger(TRACEBACK_LOGGER)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in tb.handlers):
        tb.addHandler(logging.StreamHandler())


def log_traceback(message: str) -> None:
    """`message` and the current exception's traceback, to train.log (and the console if asked)."""
    logging.getLogger(TRACEBACK_LOGGER).error(message, exc_info=True)


def write_state(run_dir: Path, state: str, **fields: Any) -> None:
    """`state.json` (docs/ARCHITECTURE.md §2): what a monitor needs to know about the run right now.

    Fields: state, iteration, saved_iteration (what latest.pth holds), total_iters, epoch,
    best_miou, last_miou, eta_s, elapsed_s (training wall time summed over every start),
    world_size, host, pid, error, updated.
    """
    data = {'state': state, **fields, 'updated': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    if data.get('eta_s') is not None:
        data['eta_s'] = round(float(data['eta_s']), 1)
    if data.get('elapsed_s') is not None:
        data['elapsed_s'] = round(float(data['elapsed_s']), 1)
    atomic_write_json(Path(run_dir) / STATE_FILE, data)


class MeanMeter:
    """Running means of named scalars since the last `reset`; tensors stay on device until read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = {}

    def update(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().float()
            self._sums[k] = self._sums.get(k, 0.0) + v
            self._counts[k] = self._counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(self._sums[k] / self._counts[k]) for k in self._sums}


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively: configs built in Python become YAML-safe and compare equal
    to their YAML round trip."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def count_parameters(model: torch.nn.Module) -> list[str]:
    """Lines 'name: trainable/total params' for the whole model and each top-level part."""
    def fmt(n: int) -> str:
        return f'{n / 1e6:.2f}M' if n >= 10_000 else f'{n:,}'

    lines = []
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(f'Total params: {fmt(total)} (trainable {fmt(trainable)})')
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        if n == 0:
            continue
        t = sum(p.numel() for p in child.parameters() if p.requires_grad)
        lines.append(f'  {name}: trainable {fmt(t)} / total {fmt(n)}')
    return lines
