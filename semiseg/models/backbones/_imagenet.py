"""Read ImageNet backbone checkpoints and load them into a backbone, strict about missing weights.

The UniMatch release loads `pretrained/resnet101.pth` with `strict=False` and `pretrained/xception.pth`
by updating the model's own state dict (LiheYoung/UniMatch `model/backbone/resnet.py`, `_resnet`;
`model/backbone/xception.py`, `xception`), so a wrong or truncated file silently leaves random
weights. Here every backbone weight must come from the file (BatchNorm `num_batches_tracked`
counters aside); keys the backbone does not have (an ImageNet classifier `fc.*`) are dropped.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from semiseg.models.weights import WeightsError
from semiseg.utils.checkpoint_io import CheckpointError, read_checkpoint
from semiseg.utils.modules import inner_state_dict, strip_prefixes

logger = logging.getLogger(__name__)

_WRAPPERS = ('state_dict', 'model')
_PREFIXES = ('module.', 'backbone.')


def read_state_dict(path: str | os.PathLike, how_to_provide: str = '') -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (`{'state_dict'|'model': sd}` or a bare dict), on the CPU,
    without `module.` / `backbone.` prefixes. Read with `weights_only=True` (no code runs)."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise WeightsError(f'ImageNet weights not found: {path}. {how_to_provide}'.strip())
    try:
        obj = read_checkpoint(path)
    except CheckpointError as err:
        message = str(err).rstrip()
        sep = ' ' if message.endswith(('.', '?', '!')) else '. '
        raise WeightsError(f'{message}{sep}{how_to_provide}'.strip()) from err
    obj = inner_state_dict(obj, _WRAPPERS)
    if not isinstance(obj, Mapping) or not any(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f'{path} holds no state dict (got {type(obj).__name__}). {how_to_provide}'.strip())
    return strip_prefixes(obj, _PREFIXES, tensors_only=True)


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f' and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def load_backbone_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state_dict` into `module`: every parameter and running statistic must be present with
    its shape (WeightsError otherwise, naming the keys); keys the module lacks are logged and dropped."""
    own = module.state_dict()
    name = type(module).__name__
    missing = [k for k in own if k not in state_dict and not k.endswith('num_batches_tracked')]
    if missing:
        raise WeightsError(f'{source} lacks {len(missing)} {name} weights: {_listing(missing)}')
    shape = [f'{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})'
             for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if shape:
        raise WeightsError(f'{source} does not fit {name}: {len(shape)} shape mismatches: '
                           f'{_listing(shape, 4)}')
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        logger.info('%s: ignoring %d tensors %s has no place for (%s)', source, len(unexpected), name,
                    _listing(unexpected, 4))
    matched = {k: v for k, v in state_dict.items() if k in own}
    module.load_state_dict(matched, strict=False)
    logger.info('loaded %d ImageNet tensors from %s into %s', len(matched), source, name)
