"""Optimizer construction as in the releases (google-research/semivl `semivl.py`, its
`build_optimizer` call; LiheYoung/UniMatch `unimatch.py`).

- mmcv-style configs (`cfg['optimizer'] = {type, lr, weight_decay, paramwise_cfg}`) follow mmcv
  1.x DefaultOptimizerConstructor: one parameter group per tensor in module registration order
  (frozen tensors included with the default lr/wd), custom keys tried sorted alphabetically then
  by length descending, the first key that is a substring of the parameter name wins.
- 'original' configs (`lr`, `lr_multi` keys, no `optimizer`) build UniMatch's SGD: backbone at
  lr, everything else at lr * lr_multi, momentum 0.9, weight decay 1e-4.

Every group gets `initial_lr` (the LR schedule scales it). `efficient=True` merges groups with
identical hyper-parameters and drops frozen tensors: the same update, far fewer groups.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from semiseg.engine.options import option
from semiseg.utils.modules import unwrap

logger = logging.getLogger(__name__)

_NON_OPTIMIZER_KEYS = ('type', 'paramwise_cfg')


def sorted_custom_keys(custom_keys: dict) -> list[str]:
    """mmcv's key priority: alphabetical, then longest first (stable)."""
    return sorted(sorted(custom_keys), key=len, reverse=True)


def paramwise_groups(model: nn.Module, base_lr: float, base_wd: float,
                     custom_keys: dict | None) -> list[dict]:
    """One group per parameter tensor with its lr and weight decay (mmcv semantics)."""
    custom_keys = custom_keys or {}
    keys = sorted_custom_keys(custom_keys)
    groups = []
    for name, param in unwrap(model).named_parameters():
        lr, wd = base_lr, base_wd
        if param.requires_grad:
            for key in keys:
                if key in name:
                    lr = base_lr * float(custom_keys[key].get('lr_mult', 1.0))
                    wd = base_wd * float(custom_keys[key].get('decay_mult', 1.0))
                    break
        groups.append({'params': [param], 'lr': lr, 'weight_decay': wd, 'name': name})
    return groups


def merge_groups(groups: list[dict]) -> list[dict]:
    """Drop frozen tensors and merge groups whose hyper-parameters are identical."""
    merged: dict[tuple, dict] = {}
    for g in groups:
        params = [p for p in g['params'] if p.requires_grad]
        if not params:
            continue
        hp = tuple(sorted((k, v) for k, v in g.items() if k not in ('params', 'name')))
        if hp not in merged:
            merged[hp] = {**{k: v for k, v in g.items() if k != 'name'}, 'params': []}
        merged[hp]['params'].extend(params)
    return list(merged.values())


def _original_groups(model: nn.Module, lr: float, lr_multi: float) -> list[dict]:
    """UniMatch's two groups: backbone at lr, the rest at lr * lr_multi."""
    backbone, rest = [], []
    for name, param in unwrap(model).named_parameters():
        (backbone if name.startswith('backbone.') else rest).append(param)
    return [{'params': backbone, 'lr': lr}, {'params': rest, 'lr': lr * lr_multi}]


# optimizers with torch's fused (one kernel per step) implementation that `fused` may switch on
FUSED_OPTIMIZERS = ('AdamW', 'Adam')


def use_fused(opt_type: str, params: list[torch.Tensor], fused: bool | None) -> bool:
    """Whether to build `opt_type` with `fused=True`: never for other optimizers or when
    `fused` is False; when None (auto) only if every parameter is a float tensor on CUDA;
    when True always (torch then checks the devices itself)."""
    if fused is False or opt_type not in FUSED_OPTIMIZERS:
        return False
    if fused:
        return True
    return bool(params) and all(p.is_cuda and torch.is_floating_point(p) for p in params)


def build_optimizer(model: nn.Module, cfg: dict, efficient: bool = False,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """The optimizer the run config describes; see the module docstring.

    `model` may be DDP-wrapped (parameter names never carry `module.`). `fused` (AdamW / Adam):
    None = torch's fused kernel when all parameters are on CUDA (the same update, one launch
    instead of one per tensor group), False = never, True = always. A `fused` or `foreach`
    key in cfg['optimizer'] is passed to torch as it is and wins. Without `fused`, the run's engine
    option `fused_optimizer` ('auto' | 'on' | 'off') decides.
    """
    if fused is None:
        fused = {'auto': None, 'on': True, 'off': False}[option(cfg, 'fused_optimizer')]
    opt_cfg = cfg.get('optimizer')
    if opt_cfg is None:
        if 'lr' not in cfg:
            raise ValueError("config needs an 'optimizer' dict (mmcv style) or 'lr' and "
                             "'lr_multi' keys (the 'original' SGD style)")
        lr = float(cfg['lr'])
        groups = _original_groups(model, lr, float(cfg.get('lr_multi', 1.0)))
        if efficient:
            groups = [{'params': [p for p in g['params'] if p.requires_grad], 'lr': g['lr']}
                      for g in groups]
            groups = [g for g in groups if g['params']]
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=1e-4)
    else:
        if not isinstance(opt_cfg, dict) or 'type' not in opt_cfg or 'lr' not in opt_cfg:
            raise ValueError(f"'optimizer' must be a dict with 'type' and 'lr', got {opt_cfg!r}")
        opt_cls = getattr(torch.optim, opt_cfg['type'], None)
        if not (isinstance(opt_cls, type) and issubclass(opt_cls, torch.optim.Optimizer)):
            raise ValueError(f"unknown optimizer type {opt_cfg['type']!r}; use a torch.optim "
                             "class name such as 'AdamW' or 'SGD'")
        kwargs = {k: v for k, v in opt_cfg.items() if k not in _NON_OPTIMIZER_KEYS}
        kwargs['lr'] = float(kwargs['lr'])
        base_wd = float(kwargs.get('weight_decay', 0.0))
        paramwise = opt_cfg.get('paramwise_cfg') or {}
        unsupported = set(paramwise) - {'custom_keys'}
        if unsupported:
            raise ValueError(f'paramwise_cfg supports only custom_keys (as the release uses); '
                             f'remove {sorted(unsupported)}')
        custom = paramwise.get('custom_keys')
        groups = paramwise_groups(model, kwargs['lr'], base_wd, custom)
        groups = merge_groups(groups) if efficient else [
            {k: v for k, v in g.items() if k != 'name'} for g in groups]
        if 'fused' not in kwargs and 'foreach' not in kwargs and use_fused(
                opt_cfg['type'], [p for g in groups for p in g['params']], fused):
            kwargs['fused'] = True
        optimizer = opt_cls(groups, **kwargs)
    for group in optimizer.param_groups:
        group['initial_lr'] = group['lr']
    logger.info('optimizer %s with %d parameter groups%s', type(optimizer).__name__,
                len(optimizer.param_groups), ' (fused)' if optimizer.defaults.get('fused') else '')
    return optimizer
