"""Evaluation: inference modes, mIoU and the evaluation loop (docs/ARCHITECTURE.md §6)."""
from .evaluate import EvaluationInterrupted, evaluate
from .metrics import IoUAccumulator
from .sampler import DistributedEvalSampler

__all__ = ['DistributedEvalSampler', 'EvaluationInterrupted', 'IoUAccumulator', 'evaluate']
