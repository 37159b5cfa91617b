"""Helpers on torch modules."""
from __future__ import annotations

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
