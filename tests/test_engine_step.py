"""The one training step (semiseg/engine/step.py), its deferred finiteness check, and the trainer's shape:
a loop under 200 lines whose jobs are ordered hooks."""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from semiseg.engine.hooks import default_hooks
from semiseg.engine.hooks.checkpoint import CheckpointHook
from semiseg.engine.hooks.evaluation import EvaluationHook
from semiseg.engine.hooks.status import StatusHook
from semiseg.engine.step import LossWatch, train_step
from semiseg.methods.base import StepContext, StepResult

CPU = torch.device('cpu')


class TinyMethod:
    """Two weighted losses of a linear model; counts its after_step calls."""

    def __init__(self, model: nn.Module, weights: dict | None = None) -> None:
        self.model, self.after = model, []
        self.weights = weights or {'a': 0.5, 'b': 2.0}

    def step(self, batch, ctx):
        out = self.model(batch['x'])
        return StepResult({'a': out.pow(2).mean(), 'b': out.abs().mean()}, dict(self.weights))

    def after_step(self, ctx):
        self.after.append(ctx.iteration)


class RecordingScheduler:
    def __init__(self) -> None:
        self.steps = []

    def step(self, it):
        self.steps.append(it)


def test_train_step_is_the_release_order_and_returns_detached_losses():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    reference = copy.deepcopy(model)
    batch = {'x': torch.randn(5, 4)}
    method, scheduler = TinyMethod(model), RecordingScheduler()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    spans = []

    @contextlib.contextmanager
    def span(name):
        spans.append(name)
        yield

    result, total = train_step(method, opt, scheduler, batch, StepContext(iteration=7), 'fp32', CPU, span=span)

    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    out = reference(batch['x'])
    ref_total = 0.5 * out.pow(2).mean() + 2.0 * out.abs().mean()
    ref_opt.zero_grad()
    ref_total.backward()
    ref_opt.step()
    assert torch.equal(total, ref_total.detach()) and not total.requires_grad
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))
    assert spans == ['step', 'backward', 'optimizer'] and method.after == [7] and scheduler.steps == [7]
    assert not any(v.requires_grad for v in result.losses.values())


def test_a_loss_without_weight_is_one_clear_error():
    model = nn.Linear(4, 3)
    method = TinyMethod(model, weights={'a': 1.0})
    with pytest.raises(ValueError, match=r"losses \['a', 'b'\] but weights \['a'\]; every loss needs exactly one"):
        train_step(method, torch.optim.SGD(model.parameters(), lr=0.1), None, {'x': torch.randn(2, 4)},
                   StepContext(), 'fp32', CPU)


def test_loss_watch_finds_the_first_non_finite_step_once():
    watch = LossWatch()
    for it, value in enumerate([1.0, float('nan'), float('inf')]):
        watch.record(it, 0, torch.tensor(value), {'a': torch.tensor(value)})
    assert watch.first_bad(lambda flag: flag)[0] == 1
    assert watch.first_bad(lambda flag: flag) is None            # checked steps are not checked again
    watch.record(3, 0, torch.tensor(1.0), {})
    assert watch.first_bad(lambda flag: True)[0] == 3              # a NaN on another rank stops this one


def test_the_trainer_is_a_short_loop_of_ordered_hooks():
    lines = (Path(__file__).parents[1] / 'semiseg' / 'engine' / 'trainer.py').read_text().splitlines()
    assert len(lines) <= 200
    hooks = default_hooks(CheckpointHook(), EvaluationHook(), StatusHook())
    names = [type(h).__name__ for h in hooks]
    # after an epoch: latest.pth, then the evaluation (best.pth), then state.json; after training:
    # results.json (evaluation), then the HParams (tensorboard), then the final state
    assert names.index('CheckpointHook') < names.index('EvaluationHook') < names.index('TensorBoardHook') \
        < names.index('StatusHook')
    assert names.index('DebugPanelHook') < names.index('LoggingHook') < names.index('CheckpointHook')
