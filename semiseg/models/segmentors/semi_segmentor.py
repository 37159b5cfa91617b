"""SemiSegmentor: backbone + decode head, with the perturbation hooks of the SSL methods.

The model of UniMatch (DeepLabV3+), AllSpark (MiT + AllSpark decoder) and UniMatch V2
(DINOv2 + DPT). The backbone returns exactly the feature maps its head reads, so feature
perturbation touches those and nothing else. Release checkpoints load through
`semiseg.models.checkpoint.load_checkpoint`, which renames the release's top-level prefixes
with `release_key_prefixes` (e.g. AllSpark's `decoder.` -> `decode_head.`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from semiseg.models.perturb import apply_channel_mask, complementary_masks, dropout_copies

from .common import SegmentorCommon


@MODELS.register_module()
class SemiSegmentor(SegmentorCommon, EncoderDecoder):
    """`model(x)` -> logits (B, K, H, W) at the input size.

    - `model(x, need_fp=True)` -> (logits, logits_fp): the head runs once on the clean and the
      channel-dropped features together (its BatchNorm sees both), UniMatch's FP.
    - `model(cat(s1, s2), comp_drop=True)` -> logits with UniMatch V2's complementary dropout on
      every feature map.
    - `feature_masks`: explicit masks for either perturbation (a list of (B, C) keep masks for
      FP, one (2B, C) mask for comp_drop), used by tests to replay recorded draws.
    """

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 fp_rate: float = 0.5,
                 comp_drop_keep_ratio: float = 0.5,
                 release_key_prefixes: Mapping[str, str] | None = None,
                 disable_dropout: bool = False,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(backbone=backbone, decode_head=decode_head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.fp_rate = float(fp_rate)
        self.comp_drop_keep_ratio = float(comp_drop_keep_ratio)
        self.release_key_prefixes = dict(release_key_prefixes or {})
        self.disable_dropout = disable_dropout

    @property
    def eval_batch_independent(self) -> bool:
        """Whether an image's eval output ignores the rest of its batch (BatchNorm uses running
        statistics in eval mode; AllSpark's head says for itself), so windows may be batched."""
        return bool(getattr(self.decode_head, 'eval_batch_independent', True))

    def init_weights(self) -> None:
        """Pretrained backbone weights (when configured); heads keep their own init."""
        for module in (self.backbone, self.decode_head):
            if hasattr(module, 'init_weights'):
                module.init_weights()

    def extract_feat(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(inputs)
        return list(feats) if isinstance(feats, (list, tuple)) else [feats]

    def convert_release_state_dict(self, state_dict: Mapping[str, torch.Tensor]
                                   ) -> dict[str, torch.Tensor]:
        """Rename a release checkpoint's top-level prefixes to ours (keys without `module.`)."""
        out = {}
        for key, value in state_dict.items():
            for old, new in self.release_key_prefixes.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            out[key] = value
        return out

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor',
                need_fp: bool = False, comp_drop: bool = False,
                feature_masks: Sequence[torch.Tensor] | torch.Tensor | None = None):
        self._check_forward(mode, need_fp, comp_drop)
        if self.disable_dropout and self.training:
            for m in self.modules():
                if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                    m.eval()
        feats = self.extract_feat(inputs)
        if need_fp:
            feats = dropout_copies(feats, self.fp_rate, feature_masks)
        elif comp_drop:
            if feature_masks is None:
                if inputs.shape[0] % 2:
                    raise ValueError(f'comp_drop needs a batch cat(s1, s2) of even size, got {inputs.shape[0]}')
                feature_masks = complementary_masks(inputs.shape[0] // 2, feats[0].shape[1],
                                                    self.comp_drop_keep_ratio)
            feats = apply_channel_mask(feats, feature_masks)
        return self._at_input_size(self.decode_head(feats), inputs, need_fp)
