"""The parts a training run is built from (`TrainerParts`: the real builders by default, small
stand-ins in tests) and the two ways a training ends early."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from semiseg.data.build import build_datasets
from semiseg.data.datasets import dataset_info
from semiseg.engine.loaders import build_eval_loader
from semiseg.engine.optim import build_optimizer
from semiseg.engine.schedule import build_scheduler
from semiseg.evaluation import evaluate
from semiseg.methods import build_method, method_info
from semiseg.models.builder import build_segmentor


class TrainingInterrupted(RuntimeError):
    """Training stopped on request (SIGTERM / SIGUSR1 / request_stop); latest.pth holds the state."""


class TrainingFailed(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); latest.pth keeps the last good state."""


@dataclass(frozen=True)
class TrainerParts:
    """The builders a run is made of. The defaults are the real ones; tests pass small stand-ins.

    Signatures: `method_info(name) -> MethodInfo`, `dataset_info(name, folder) -> DatasetInfo`,
    `build_datasets(cfg, method_info) -> TrainData`, `build_model(cfg) -> nn.Module`,
    `build_method(cfg, model)`, `build_optimizer(model, cfg)`, `build_scheduler(optimizer, cfg,
    total_iters)`, `build_eval_loader(dataset, distributed, num_workers)`,
    `evaluate(model, loader, cfg, device) -> {'miou', 'per_class_iou'}`.
    """

    method_info: Callable = method_info
    dataset_info: Callable = dataset_info
    build_datasets: Callable = build_datasets
    build_model: Callable = build_segmentor
    build_method: Callable = build_method
    build_optimizer: Callable = build_optimizer
    build_scheduler: Callable = build_scheduler
    build_eval_loader: Callable = build_eval_loader
    evaluate: Callable = evaluate
