"""What our segmentors (SemiSegmentor, VLMSegmentor) share on top of mmseg's EncoderDecoder: heads
read defensively, the forward contract (mode 'tensor', at most one perturbation) and logits at the
input size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS


class SegmentorCommon:
    """Mixed in before EncoderDecoder, whose __init__ calls `_init_decode_head`."""

    def _init_decode_head(self, decode_head: dict) -> None:
        """Heads need not subclass mmseg's BaseDecodeHead; read what we need from them."""
        self.decode_head = MODELS.build(decode_head)
        self.align_corners = getattr(self.decode_head, 'align_corners', False)
        self.num_classes = self.decode_head.num_classes
        self.out_channels = getattr(self.decode_head, 'out_channels', self.num_classes)

    def _check_forward(self, mode: str, need_fp: bool, comp_drop: bool) -> None:
        if mode != 'tensor':
            raise ValueError(f"{type(self).__name__} supports mode='tensor' only (got {mode!r}); losses and "
                             'predictions are computed by semiseg.methods / semiseg.evaluation')
        if need_fp and comp_drop:
            raise ValueError('need_fp and comp_drop are alternative perturbations; pass one')

    def _at_input_size(self, logits: torch.Tensor, inputs: torch.Tensor, need_fp: bool):
        """Logits resized to the input; with `need_fp`, the (clean, perturbed) halves."""
        logits = F.interpolate(logits, size=inputs.shape[-2:], mode='bilinear', align_corners=self.align_corners)
        return tuple(logits.chunk(2)) if need_fp else logits
