"""Decode heads; importing the package registers every module in it with mmseg's MODELS."""
from semiseg.models._autoimport import import_submodules

from .vlg_head import VLGHead

import_submodules(__name__, __path__)

__all__ = ['VLGHead']
