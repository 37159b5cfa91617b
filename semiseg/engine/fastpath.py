"""The fast path: switches that change how fast a run trains, not what it computes (beyond float
rounding). fp32 without them is the reproduction default; `precision=bf16` plus these is the
fast path (README, "Speed"). The trainer and `semiseg.tools.bench` apply them the same way.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> list[str]:
    """Switch `with_cp` on every submodule that has it (MaskCLIP ViT, DINOv2); returns their names.

    Blocks are recomputed in the backward pass: less memory, the same gradients."""
    names = []
    for name, module in model.named_modules():
        if hasattr(module, 'with_cp'):
            module.with_cp = bool(enabled)
            names.append(name or type(module).__name__)
    return names


def set_channels_last(model: nn.Module) -> list[str]:
    """The convolutional decode head and the conv encoder (where present) to channels_last."""
    names = []
    for name in ('decode_head', 'conv_encoder'):
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            module.to(memory_format=torch.channels_last)
            names.append(name)
    return names


def compile_model(model: nn.Module, backend: str = 'inductor') -> None:
    """`torch.compile` in place (`nn.Module.compile`: state-dict keys unchanged), the guidance
    encoder too (it is called outside the model's forward)."""
    model.compile(backend=backend)
    encoder = getattr(model, 'clip_encoder', None)
    if isinstance(encoder, nn.Module):
        encoder.compile(backend=backend)


def matmul_precision(precision: str) -> str:
    """torch's float32 matmul precision for a run precision: 'high' (TF32 on Ampere+) for tf32."""
    return 'high' if precision == 'tf32' else 'highest'


@contextlib.contextmanager
def precision_mode(precision: str) -> Iterator[None]:
    """The process-wide matmul precision of `precision` inside the block; restored afterwards."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(matmul_precision(precision))
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


def autocast(precision: str, device: torch.device):
    """bf16 autocast for precision 'bf16', nothing otherwise."""
    if precision == 'bf16':
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def apply_fast_path(model: nn.Module, cfg: dict) -> None:
    """The run's fast-path engine options on `model` (all off by default: the releases' numerics)."""
    import logging

    from .options import option
    log = logging.getLogger('semiseg.engine.trainer')
    torch.set_float32_matmul_precision(matmul_precision(option(cfg, 'precision')))
    if option(cfg, 'grad_checkpointing'):
        log.info('activation checkpointing in %s', ', '.join(set_activation_checkpointing(model)) or 'nothing')
    if option(cfg, 'channels_last'):
        log.info('channels_last: %s', ', '.join(set_channels_last(model)) or 'nothing')
    if option(cfg, 'compile'):
        compile_model(model)
        log.info('model compiled with torch.compile')
