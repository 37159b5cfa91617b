"""The method contract: one training step in, named losses and their weights out.

A method owns the maths of one iteration (forwards, pseudo-labels, losses) and nothing else:
it never logs, writes files or steps the optimizer. The engine sums `weights[k] * losses[k]`,
backpropagates, logs `losses` and `stats`, and draws `visuals` into debug panels.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
from torch import nn

from semiseg.methods.registry import MethodInfo, method_info

# Keys a method may put in StepResult.visuals, in the order of the release's debug panel
# (google-research/semivl `semivl.py`, the debug figures of the training loop): row 1 images,
# row 2 argmax predictions, row 3 labels and pseudo labels, row 4 MaskCLIP guidance labels
# (only with MCC).
VISUAL_LAYOUT: tuple[tuple[str, ...], ...] = (
    ('img_x', 'img_s1', 'img_s2', 'img_w'),
    ('pred_x', 'pred_s1', 'pred_s2', 'pred_fp'),
    ('mask_x', 'pl_s1', 'pl_s2', 'pl_fp'),
    ('', 'mcc_s1', 'mcc_s2', 'mcc_fp'),
)


@dataclass
class StepContext:
    """Where the training loop stands when it calls `Method.step`."""
    iteration: int = 0          # global iteration (epoch * iters_per_epoch + i)
    total_iters: int = 1        # iterations of the whole run (for the MCC lambda decay)
    epoch: int = 0
    want_visuals: bool = False  # fill StepResult.visuals for a debug panel
    max_visuals: int = 2        # samples kept in the visuals


@dataclass
class StepResult:
    """What one step produced. `losses` are unweighted scalars; `weights` has the same keys."""
    losses: dict[str, torch.Tensor]
    weights: dict[str, float]
    stats: dict[str, float | torch.Tensor] = field(default_factory=dict)
    visuals: dict[str, torch.Tensor] = field(default_factory=dict)

    def total(self) -> torch.Tensor:
        """The loss the engine backpropagates (semiseg.engine.step): sum of weight * loss, in fp32."""
        if set(self.losses) != set(self.weights):
            raise ValueError(f'the method returned losses {sorted(self.losses)} but weights {sorted(self.weights)}; '
                             'every loss needs exactly one weight')
        return sum(float(self.weights[k]) * v.float() for k, v in self.losses.items())


def keep_visuals(tensors: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """First `n` samples of each tensor, detached and on the CPU (for debug panels)."""
    return {k: v[:n].detach().to('cpu') for k, v in tensors.items()}


class Method(abc.ABC):
    """Base class: holds the config, the (possibly DDP-wrapped) model and the registry entry."""

    name: str = ''
    visual_layout: tuple[tuple[str, ...], ...] = VISUAL_LAYOUT   # its debug panel's grid of visual keys

    def __init__(self, cfg: dict, model: nn.Module):
        self.cfg = cfg
        self.model = model
        self.info: MethodInfo = method_info(self.name)

    def check_batch(self, batch: dict) -> None:
        """Raise a clear error when the batch lacks a view the registry promised."""
        missing = [k for k in self.info.batch_keys if k not in batch]
        if missing:
            raise KeyError(f'method {self.name!r} needs batch keys {missing}; the data layer builds the '
                           'views named in semiseg/methods/registry.py')

    @abc.abstractmethod
    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        """Run the forwards of one iteration and return named losses (no backward)."""

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimizer step (e.g. an EMA teacher update); nothing by default."""
        return None

    def eval_models(self) -> dict[str, nn.Module]:
        """Models evaluated next to the trained one, by name (e.g. {'ema': teacher})."""
        return {}

    def state_dict(self) -> dict:
        """Method state saved in checkpoints (e.g. the EMA teacher); none by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        return None
