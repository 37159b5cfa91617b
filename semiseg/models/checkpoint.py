"""Load model weights from our checkpoints, the SemiVL release's, or plain state dicts.

Accepted: `{'model': state_dict, ...}` (ours: written by the engine; the release: DDP keys with
`module.`), `{'state_dict': ...}` and a bare state dict. Guidance-encoder keys (`clip_encoder.*`)
may be absent from the file (release eval.py strips them; the encoder then keeps its CLIP
weights) or present without an encoder in the model (they are ignored).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from semiseg.utils.checkpoint_io import CheckpointError, read_checkpoint
from semiseg.utils.modules import inner_state_dict, strip_prefixes, unwrap

__all__ = ['CheckpointError', 'extract_state_dict', 'load_checkpoint', 'load_state_dict_checked']

logger = logging.getLogger(__name__)

GUIDANCE_PREFIX = 'clip_encoder.'


WEIGHTS = ('model', 'ema')


def _ema_weights(obj: Any, source: str) -> Any:
    """The EMA teacher inside a checkpoint: ours (`method.teacher`) or UniMatch V2's (`model_ema`)."""
    if isinstance(obj, Mapping):
        if isinstance(obj.get('model_ema'), Mapping):
            return obj['model_ema']
        teacher = (obj.get('method') or {}).get('teacher') if isinstance(obj.get('method'), Mapping) else None
        if isinstance(teacher, Mapping):
            return teacher
    raise CheckpointError(f'{source} holds no EMA teacher (method.teacher, or model_ema in a UniMatch V2 '
                          'release checkpoint); load its model weights instead')


def extract_state_dict(obj: Any, source: str = 'checkpoint', weights: str = 'model') -> dict[str, torch.Tensor]:
    """The model state dict inside a loaded checkpoint object, without `module.` prefixes.

    `weights='ema'` takes the EMA teacher (UniMatch V2 runs), which the papers report."""
    if weights not in WEIGHTS:
        raise ValueError(f'weights must be one of {WEIGHTS}, got {weights!r}')
    if weights == 'ema':
        obj = _ema_weights(obj, source)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    obj = inner_state_dict(obj, ('model', 'state_dict'))
    if not isinstance(obj, Mapping) or not obj or \
            not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        kind = type(obj).__name__
        keys = list(obj)[:5] if isinstance(obj, Mapping) else []
        raise CheckpointError(f'{source} holds no state dict ({kind} with keys {keys}); expected '
                              "{'model': state_dict, ...} or a plain {name: tensor} dict")
    return strip_prefixes(obj, ('module.',))


def _summary(keys: list[str], what: str) -> str:
    return f'{len(keys)} {what} (e.g. {", ".join(keys[:5])})'


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                            source: str = 'checkpoint') -> None:
    """Strict load with readable errors; tolerates only guidance-encoder key differences."""
    own = model.state_dict()
    has_guidance = any(k.startswith(GUIDANCE_PREFIX) for k in own)
    sd = dict(state_dict)
    if not has_guidance:
        dropped = [k for k in sd if k.startswith(GUIDANCE_PREFIX)]
        for k in dropped:
            del sd[k]
        if dropped:
            logger.info('ignoring %d clip_encoder tensors (model has no guidance encoder)',
                        len(dropped))
    missing = [k for k in own if k not in sd]
    tolerated = [k for k in missing if k.startswith(GUIDANCE_PREFIX)]
    missing = [k for k in missing if not k.startswith(GUIDANCE_PREFIX)]
    unexpected = [k for k in sd if k not in own]
    shape = [f'{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}'
             for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(_summary(missing, 'missing keys'))
        if unexpected:
            parts.append(_summary(unexpected, 'unexpected keys'))
        if shape:
            parts.append(_summary(shape, 'shape mismatches'))
        raise CheckpointError(f'{source} does not fit {type(model).__name__}: '
                              + '; '.join(parts) + '. Was it trained with the same model, '
                              'nclass and crop_size?')
    if tolerated:
        logger.warning('%s has no clip_encoder weights; the guidance encoder keeps its own',
                       source)
    model.load_state_dict(sd, strict=False)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, trust: bool = False,
                    weights: str = 'model') -> dict[str, Any]:
    """Load the model weights of `path` into `model` (DDP-wrapped or not).

    Release checkpoints are renamed to our keys by the model's `convert_release_state_dict` when
    it has one (e.g. AllSpark's `decoder.` -> `decode_head.`). `trust=True` allows a file that
    needs full unpickling (see `semiseg.utils.checkpoint_io`); `weights='ema'` loads the EMA teacher
    of a UniMatch V2 run (ours or the release's `model_ema`). Returns the loaded checkpoint
    object as a dict (optimizer etc. for the caller to use).
    """
    path = Path(path).expanduser()
    obj = read_checkpoint(path, trust=trust)
    sd = extract_state_dict(obj, str(path), weights)
    net = unwrap(model)
    convert = getattr(net, 'convert_release_state_dict', None)
    if convert is not None:
        sd = convert(sd)
    load_state_dict_checked(net, sd, str(path))
    logger.info('loaded %d tensors from %s', len(sd), path)
    return obj if isinstance(obj, dict) and 'model' in obj else {'model': sd}
