"""Python API: build an experiment's model, load weights, predict.

    from semiseg.api import build_model, load_checkpoint, predict
    model = build_model(40, 0)                      # the exp-40 run-0 SemiVL model
    load_checkpoint(model, 'best.pth')              # ours or the release's format
    logits = model.eval()(images)                   # (B, N, H, W), ImageNet-normalised input
    logits = predict(model, images, 'zegclip_sliding_window', crop_size=512, stride=426)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semiseg.evaluation.inference import predict
from semiseg.models.builder import build_segmentor
from semiseg.models.checkpoint import load_checkpoint

__all__ = ['build_model', 'load_checkpoint', 'predict', 'run_config']


def _as_embedding(value: Any, name: str) -> torch.Tensor | None:
    """A text embedding given as a tensor, an array or a `.npy` path."""
    if value is None or torch.is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value).float()
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if path.suffix != '.npy' or not path.is_file():
            raise FileNotFoundError(f'{name}={value!r}: expected an existing .npy file '
                                    '(rows x 512 CLIP text embedding)')
        return torch.from_numpy(np.load(path)).float()
    raise TypeError(f'{name} must be a tensor, a numpy array or a .npy path, '
                    f'not {type(value).__name__}')


def run_config(exp: int, run: int, **overrides: Any) -> dict[str, Any]:
    """The run config of `exp`/`run` with config-key `overrides` applied."""
    from semiseg.experiments.registry import get_runs
    runs = get_runs(exp)
    if not 0 <= run < len(runs):
        raise IndexError(f'experiment {exp} has runs 0..{len(runs) - 1}, not {run}')
    cfg = dict(runs[run])
    cfg.update(overrides)
    return cfg


def build_model(exp: int, run: int, pretrained: bool = True, **overrides: Any) -> torch.nn.Module:
    """The model of experiment `exp`, run `run`.

    `overrides`: run-config keys (e.g. `data_root=`, `clip_encoder=None`), plus
    `text_embedding=` / `mcc_text_embedding=` (tensor, array or `.npy` path).
    `pretrained=False`: random init (e.g. before `load_checkpoint`).
    """
    text = _as_embedding(overrides.pop('text_embedding', None), 'text_embedding')
    mcc = _as_embedding(overrides.pop('mcc_text_embedding', None), 'mcc_text_embedding')
    cfg = run_config(exp, run, **overrides)
    return build_segmentor(cfg, pretrained=pretrained, text_embedding=text,
                           mcc_text_embedding=mcc)
