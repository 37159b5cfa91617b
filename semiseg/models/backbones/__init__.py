"""Backbones; importing the package registers every module in it with mmseg's MODELS."""
from semiseg.models._autoimport import import_submodules

from .maskclip_vit import MaskClipVisionTransformer

import_submodules(__name__, __path__)

__all__ = ['MaskClipVisionTransformer']
