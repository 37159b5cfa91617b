"""The release's poly LR schedule with linear warmup (google-research/semivl `semivl.py`, LR update).

The trainer calls `step(iters)` after the optimizer step of iteration `iters`, which sets the LR
the *next* iteration uses: lr = initial_lr * factor(iters) with
- iters < warmup_iters: factor = 1 - (1 - iters / warmup_iters) * (1 - warmup_ratio);
- otherwise: factor = (1 - iters / max_iters) ** power.
So steps 0 and 1 both run at the base LR (one step behind mmengine's PolyLR), as released.
"""
from __future__ import annotations

import torch


class PolyLRSchedule:
    """Per-iteration poly schedule over every param group's `initial_lr`; checkpointable."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_iters: int, power: float = 0.9,
                 warmup_iters: int = 0, warmup_ratio: float = 1e-6):
        if max_iters <= 0:
            raise ValueError(f'max_iters must be positive, got {max_iters}')
        if warmup_iters < 0 or warmup_iters > max_iters:
            raise ValueError(f'warmup_iters must be in [0, max_iters={max_iters}], got '
                             f'{warmup_iters}')
        self.optimizer = optimizer
        self.max_iters = int(max_iters)
        self.power = float(power)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        self.last_iter = -1
        for group in optimizer.param_groups:
            group.setdefault('initial_lr', group['lr'])

    def factor(self, iteration: int) -> float:
        """LR multiplier set after the optimizer step of `iteration`."""
        if iteration < self.warmup_iters:
            k = (1 - iteration / self.warmup_iters) * (1 - self.warmup_ratio)
            return 1 - k
        return max(0.0, 1 - iteration / self.max_iters) ** self.power

    def step(self, iteration: int) -> None:
        """Set every group's lr for the iteration after `iteration`."""
        f = self.factor(iteration)
        for group in self.optimizer.param_groups:
            group['lr'] = group['initial_lr'] * f
        self.last_iter = int(iteration)

    def get_last_lr(self) -> list[float]:
        """Current lr of every param group."""
        return [g['lr'] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {'last_iter': self.last_iter, 'max_iters': self.max_iters, 'power': self.power,
                'warmup_iters': self.warmup_iters, 'warmup_ratio': self.warmup_ratio}

    def load_state_dict(self, state: dict) -> None:
        """Restore the schedule and re-apply the lr it had set (resume)."""
        self.max_iters = int(state['max_iters'])
        self.power = float(state['power'])
        self.warmup_iters = int(state['warmup_iters'])
        self.warmup_ratio = float(state['warmup_ratio'])
        self.last_iter = int(state['last_iter'])
        if self.last_iter >= 0:
            self.step(self.last_iter)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict,
                    total_iters: int) -> PolyLRSchedule:
    """The schedule of a run: poly over scheduler_max_iters (default total_iters), warmup keys."""
    max_iters = cfg.get('scheduler_max_iters') or total_iters
    if max_iters < total_iters:
        raise ValueError(f'scheduler_max_iters ({max_iters}) must be >= the run\'s total '
                         f'iterations ({total_iters}); raise it or remove it')
    return PolyLRSchedule(optimizer, max_iters, warmup_iters=int(cfg.get('warmup_iters') or 0),
                          warmup_ratio=float(cfg.get('warmup_ratio', 1e-6)))
