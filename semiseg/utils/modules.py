"""Helpers on torch modules."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

_WRAPPERS = (nn.parallel.DistributedDataParallel, nn.DataParallel)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model behind DDP / DataParallel wrappers and `torch.compile` (or the model)."""
    while True:
        if isinstance(model, _WRAPPERS):
            model = model.module
        elif hasattr(model, '_orig_mod') and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def inner_state_dict(obj: Any, wrappers: tuple[str, ...] = ('model', 'state_dict')) -> Any:
    """The mapping a loaded checkpoint wraps under the first of `wrappers` that holds one (else
    `obj` itself): the one unwrapper of our, the releases' and ImageNet checkpoints."""
    if isinstance(obj, Mapping):
        for key in wrappers:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def strip_prefixes(state: Mapping[str, Any], prefixes: tuple[str, ...] = ('module.',),
                   tensors_only: bool = False) -> dict[str, Any]:
    """`state` with each of `prefixes` removed in turn where a key starts with it (DDP's
    `module.`); `tensors_only` drops non-tensor entries (e.g. the ints of OpenAI archives)."""
    out = {}
    for key, value in state.items():
        if tensors_only and not torch.is_tensor(value):
            continue
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out
