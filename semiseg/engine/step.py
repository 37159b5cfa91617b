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
from pathlib import Path

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


class LossWatch:
    """The losses of the steps since the last check, kept on the device: finiteness is checked at
    the next log line or checkpoint with one host sync, never per step."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, int, torch.Tensor, dict[str, torch.Tensor]]] = []

    def record(self, iteration: int, epoch: int, total: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        self.pending.append((iteration, epoch, total, losses))

    def first_bad(self, any_rank: Callable[[bool], bool]) -> tuple[int, int, dict[str, torch.Tensor]] | None:
        """(iteration, epoch, losses) of the first non-finite total since the last call, or None.
        `any_rank(flag)` ORs the flag over ranks: a NaN on another rank stops this one too (its last
        iteration then stands for it)."""
        if not self.pending:
            return None
        finite = torch.isfinite(torch.stack([t for _, _, t, _ in self.pending]))
        all_finite = bool(finite.all())
        pending, self.pending = self.pending, []
        if not any_rank(not all_finite):
            return None
        first = int((~finite).nonzero()[0]) if not all_finite else len(pending) - 1
        it, epoch, _, losses = pending[first]
        return it, epoch, losses


def non_finite_message(bad: tuple[int, int, dict[str, torch.Tensor]], latest: Path, saved_iteration: int) -> str:
    """The one-line failure of a non-finite loss, saying which checkpoint is kept and what to try."""
    it, epoch, losses = bad
    terms = ', '.join(f'{k}={float(v.detach()):.4g}' for k, v in losses.items())
    kept = (f'the last good checkpoint {latest} (iteration {saved_iteration}) is kept'
            if latest.exists() else 'no checkpoint was written yet')
    return (f'non-finite loss at iteration {it} (epoch {epoch}): {terms}; training stopped, {kept}. '
            f'Lower the learning rate, use precision fp32, or check the data of this run')
