"""One training iteration, written once: the trainer, the bench and the tests call `train_step`.

Release order (google-research/semivl `semivl.py`, LiheYoung/UniMatch-V2 `unimatch_v2.py`): the
method's forwards under autocast, the weighted loss sum, `zero_grad`, `backward`, `optimizer.step`,
the method's `after_step` (UniMatch V2's EMA update) and `scheduler.step(it)` (the schedule is set
after the optimizer step of iteration `it`, as the releases do). No host sync: the caller checks
the returned total for finiteness when it next reads values anyway (docs/ARCHITECTURE.md §2).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from semiseg.methods.base import StepContext, StepResult

from .fastpath import autocast

Span = Callable[[str], AbstractContextManager]


def _no_span(name: str) -> AbstractContextManager:
    return contextlib.nullcontext()


def train_step(method, optimizer: torch.optim.Optimizer, scheduler, batch: dict, ctx: StepContext,
               precision: str, device: torch.device, span: Span = _no_span) -> tuple[StepResult, torch.Tensor]:
    """Train one iteration; returns the step's result (losses detached, as float) and the detached total.

    `scheduler` may be None (the bench times no schedule). `span(name)` wraps the phases 'step'
    (forwards and loss sum), 'backward' and 'optimizer' (optimizer step and `after_step`); the
    bench times them, training passes nothing.
    """
    with span('step'):
        with autocast(precision, device):
            result = method.step(batch, ctx)
        result.losses = {k: v.float() for k, v in result.losses.items()}
        total = result.total()
    with span('backward'):
        optimizer.zero_grad(set_to_none=True)
        total.backward()
    with span('optimizer'):
        optimizer.step()
        method.after_step(ctx)
    if scheduler is not None:
        scheduler.step(ctx.iteration)
    result.losses = {k: v.detach() for k, v in result.losses.items()}
    return result, total.detach()
