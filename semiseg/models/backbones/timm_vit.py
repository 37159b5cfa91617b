"""timm ViT-B/16 backbone for the exp-41 ``tvit-in1k`` ablation (google-research/semivl
``model/backbone/timm_vit.py``, ``TIMMVisionTransformer``).

The architecture is timm's ``vit_base_patch16_224`` built at img_size 512 with drop_path 0.1.
ImageNet weights (timm 0.6's default tag for that name: ``augreg_in21k_ft_in1k``, IN-21k
pretrained, IN-1k fine-tuned) are loaded only by ``init_weights()`` and only when
``pretrained`` is set (True: timm hub; a path: a local timm checkpoint); timm resamples the
position embedding to the 32×32 grid. As in the release, the input stays ImageNet-normalised
although these weights expect mean/std 0.5.

Output: ``[(norm(x) after each out_index block as (B, C, h, w), ...), cls of norm(x_last)]``.
In eval mode a non-img_size input is first resized bilinearly (ac=False) to img_size.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

logger = logging.getLogger(__name__)

DEFAULT_TAG = 'augreg_in21k_ft_in1k'


def _pair(x: int | Sequence[int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


@MODELS.register_module()
class TIMMVisionTransformer(nn.Module):
    """timm ViT returning normed intermediate maps and the normed cls token.

    `fused_attn`: attention through `F.scaled_dot_product_attention` (timm's fused path).
    """

    def __init__(self,
                 model_name: str = 'vit_base_patch16_224',
                 img_size: int | Sequence[int] = 512,
                 out_indices: Sequence[int] = (4, 11),
                 drop_path_rate: float = 0.1,
                 pretrained: bool | str | None = None,
                 pretrained_tag: str = DEFAULT_TAG,
                 fused_attn: bool = True,
                 **timm_kwargs) -> None:
        super().__init__()
        import timm

        self.model_name = model_name
        self.img_size = _pair(img_size)
        self.pretrained = pretrained
        self.pretrained_tag = pretrained_tag
        self._create_kwargs = dict(img_size=self.img_size, drop_path_rate=drop_path_rate,
                                   **timm_kwargs)
        # `m` with timm's unused classifier, as in the release (same state-dict keys)
        self.m = timm.create_model(model_name, pretrained=False, **self._create_kwargs)
        # timm's Attention runs F.scaled_dot_product_attention when `fused_attn` is set, which is
        # timm's default unless $TIMM_FUSED_ATTN=0; set it here so the environment cannot turn
        # it off (False: timm's explicit softmax(q k^T) v, the same values within float error)
        for block in self.m.blocks:
            if hasattr(block.attn, 'fused_attn'):
                block.attn.fused_attn = fused_attn
        self.patch_size = _pair(self.m.patch_embed.patch_size)
        depth = len(self.m.blocks)
        bad = [i for i in out_indices if not 0 <= i < depth]
        if bad:
            raise ValueError(f'out_indices {bad} outside [0, {depth - 1}] for {model_name}')
        self.out_indices = list(out_indices)

    def init_weights(self) -> None:
        """Load timm ImageNet weights when `pretrained` is set (True: hub; str: local file)."""
        if not self.pretrained:
            return
        import timm

        overlay = {'file': str(self.pretrained)} if isinstance(self.pretrained, str) else None
        name = f'{self.model_name}.{self.pretrained_tag}' if self.pretrained_tag else self.model_name
        try:
            src = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay,
                                    **self._create_kwargs)
        except Exception as err:  # noqa: BLE001 - download / file errors get one clear message
            raise RuntimeError(
                f'cannot load timm weights {name} ({err}); on a machine without internet pass a '
                f'local timm checkpoint path as backbone pretrained') from err
        result = self.m.load_state_dict(src.state_dict(), strict=False)
        logger.info('loaded timm weights %s: missing %s, unexpected %s', name,
                    result.missing_keys, result.unexpected_keys)

    def forward(self, img: torch.Tensor) -> list:
        if not self.training and tuple(img.shape[-2:]) != self.img_size:
            img = F.interpolate(img, size=self.img_size, mode='bilinear', align_corners=False)
        vit = self.m
        x = vit.patch_embed(img)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        x = vit.norm_pre(x)
        h, w = img.shape[-2] // self.patch_size[0], img.shape[-1] // self.patch_size[1]
        prefix = getattr(vit, 'num_prefix_tokens', 1)
        feats, last = [], None
        for i, block in enumerate(vit.blocks):
            x = block(x)
            if i in self.out_indices:
                y = vit.norm(x)
                feats.append(y[:, prefix:].transpose(1, 2).reshape(x.shape[0], -1, h, w))
        last = vit.norm(x)
        return [tuple(feats), last[:, 0]]
