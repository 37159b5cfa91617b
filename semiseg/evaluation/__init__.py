"""Evaluation: inference modes, mIoU and the evaluation loop (docs/ARCHITECTURE.md §6)."""
from .evaluate import EvaluationInterrupted, build_eval_loader, evaluate
from .metrics import IoUAccumulator
from .sampler import DistributedEvalSampler

__all__ = ['DistributedEvalSampler', 'EvaluationInterrupted', 'IoUAccumulator', 'build_eval_loader', 'evaluate']
