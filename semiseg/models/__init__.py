"""Models: mmseg-registered backbones, heads and segmentors, and the run-config builder.

Importing this package registers every model type in `mmseg.registry.MODELS`.
"""
from . import backbones, heads, segmentors  # noqa: F401  (registration side effects)
from .builder import available_models, build_segmentor

__all__ = ['available_models', 'build_segmentor']
