"""ZegCLIP's CLIP ViT with deep visual prompt tuning, for the exp-41 ``zegclip`` run
(google-research/semivl ``third_party/zegclip/models/backbones/clip_vpt_vit.py``,
``VPTCLIPVisionTransformer``).

OpenAI CLIP layout and parameter names (``conv1``, ``class_embedding``, ``positional_embedding``,
``ln_pre``, ``transformer.resblocks.i.{ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_post``,
``proj``), QuickGELU, LayerNorm eps 1e-5, so OpenAI weights load by stripping ``visual.``.

- Position embedding: resized bilinearly (ac=False) 14→img/16 at load, then bilinearly to the
  runtime grid on every forward; the class embedding is added twice (token and position row).
- Prompts: ``num_tokens`` tokens. The shallow prompt (through ``prompt_proj`` and Dropout 0.1) is
  inserted after the cls token once ln_pre has run; before each layer 1..total_d_layer, the
  prompt slots are replaced by that layer's deep prompt (``prompt_proj`` then Dropout 0.1);
  later layers (none with the release's 12 layers / 11 deep prompts) drop the prompt tokens.
- Output: prompt_norm (eps 1e-6) → ln_post → @proj; returns ``[(unit-norm patch embedding
  (B, out, h, w),), unit-norm cls (B, out)]``.
- drop_path (linear up to ``drop_path_rate``) uses :class:`DropPath`, which the segmentor's
  ``disable_dropout`` switches off (like the release's zegclip DropPath).
- Only parameters whose name contains 'prompt' train (the release's freeze_backbone with
  exclude_keys=['prompt']); this is applied here because the segmentor has no such mode.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.models import weights as W
from semiseg.models.backbones.maskclip_vit import PackedSelfAttention
from semiseg.utils.pos_embed import resize_pos_embed

logger = logging.getLogger(__name__)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class DropPath(nn.Module):
    """Stochastic depth per sample; marked so ``disable_dropout`` switches it off."""

    disabled_by_disable_dropout = True

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        # sequence-first (L, B, C): one draw per sample along dim 1
        mask = x.new_empty(1, x.shape[1], 1).bernoulli_(keep)
        return x * mask / keep


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, drop_path: float = 0.0) -> None:
        super().__init__()
        # nn.MultiheadAttention's keys (attn.in_proj_weight, ...), sequence-first, through SDPA
        self.attn = PackedSelfAttention(width, heads, batch_first=False)
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential()
        self.mlp.add_module('c_fc', nn.Linear(width, 4 * width))
        self.mlp.add_module('gelu', QuickGELU())
        self.mlp.add_module('c_proj', nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (L, B, C)
        y = self.ln_1(x)
        x = x + self.drop_path(self.attn(y))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, drop_path_rate: float) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, layers).tolist()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, r) for r in rates])


@MODELS.register_module()
class VPTCLIPVisionTransformer(nn.Module):
    """CLIP ViT-B/16 with deep visual prompts (ZegCLIP); see the module docstring."""

    def __init__(self,
                 input_resolution: int = 512,
                 patch_size: int = 16,
                 width: int = 768,
                 layers: int = 12,
                 heads: int | None = None,
                 output_dim: int = 512,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (11,),
                 get_embeddings: bool = True,
                 num_tokens: int = 10,
                 prompt_dim: int = 768,
                 total_d_layer: int = 11,
                 pretrained: str | None = None,
                 freeze_except_prompt: bool = True,
                 style: str | None = None) -> None:
        super().__init__()
        if not get_embeddings:
            raise ValueError('VPTCLIPVisionTransformer supports get_embeddings=True only')
        if not 0 < total_d_layer < layers:
            raise ValueError(f'total_d_layer must be in [1, {layers - 1}] (deep prompts), '
                             f'got {total_d_layer}')
        if prompt_dim != width:
            raise ValueError(f'prompt_dim ({prompt_dim}) must equal width ({width})')
        self.img_size = (input_resolution, input_resolution)
        self.patch_size = patch_size
        self.spatial_size = input_resolution // patch_size
        self.num_layers = layers
        self.out_indices = list(out_indices)
        self.num_tokens = num_tokens
        self.total_d_layer = total_d_layer
        self.pretrained = pretrained
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.spatial_size ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=1e-5)
        self.transformer = Transformer(width, layers, heads or width // 64, drop_path_rate)
        self.ln_post = nn.LayerNorm(width, eps=1e-5)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        # visual prompts, xavier-uniform range of the patch projection fan
        val = math.sqrt(6.0 / float(3 * patch_size * patch_size + prompt_dim))
        self.prompt_embeddings = nn.Parameter(torch.empty(1, num_tokens, prompt_dim).uniform_(-val, val))
        self.deep_prompt_embeddings = nn.Parameter(
            torch.empty(total_d_layer, num_tokens, prompt_dim).uniform_(-val, val))
        self.prompt_proj = nn.Linear(prompt_dim, prompt_dim)
        nn.init.kaiming_normal_(self.prompt_proj.weight, a=0, mode='fan_out')
        self.prompt_norm = nn.LayerNorm(prompt_dim, eps=1e-6)
        self.prompt_dropout = nn.Dropout(0.1)
        if freeze_except_prompt:
            for name, p in self.named_parameters():
                p.requires_grad = 'prompt' in name

    def init_weights(self) -> None:
        """Load OpenAI CLIP visual weights (``pretrained``: 'openai' or a checkpoint path)."""
        if not self.pretrained:
            return
        sd = W.clip_state_dict(self.pretrained)
        sd = {k[len('visual.'):]: v.float() for k, v in sd.items() if k.startswith('visual.')}
        if not sd:
            raise W.WeightsError(f'{self.pretrained} has no visual.* weights. {W.HOW_TO_PROVIDE}')
        pos = sd.get('positional_embedding')
        if pos is not None and pos.shape != self.positional_embedding.shape:
            src = int(round(math.sqrt(pos.shape[0] - 1)))
            dst = (self.spatial_size, self.spatial_size)
            sd['positional_embedding'] = resize_pos_embed(pos[None], (src, src), dst, 'bilinear')[0]
        own = self.state_dict()
        bad = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
        if bad:
            raise W.WeightsError(f'CLIP weights do not fit VPTCLIPVisionTransformer: {bad[:5]}')
        result = self.load_state_dict(sd, strict=False)
        logger.info('loaded CLIP weights into VPTCLIPVisionTransformer: missing %s, unexpected %s',
                    result.missing_keys, result.unexpected_keys)

    def _prompt(self, emb: torch.Tensor, batch: int) -> torch.Tensor:
        return self.prompt_dropout(self.prompt_proj(emb).expand(batch, -1, -1))

    def forward(self, img: torch.Tensor) -> list:
        x = self.conv1(img)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1)
        pos = self.positional_embedding.to(x.dtype)
        cls_pos = pos[:1] + self.class_embedding.to(x.dtype)
        grid = resize_pos_embed(pos[None], (self.spatial_size,) * 2, (h, w), 'bilinear')[:, 1:]
        x = x + torch.cat([cls_pos[None], grid], dim=1)
        x = self.ln_pre(x)
        x = torch.cat([x[:, :1], self._prompt(self.prompt_embeddings, b), x[:, 1:]], dim=1)
        x = x.transpose(0, 1)  # (L, B, C)
        for i, block in enumerate(self.transformer.resblocks):
            if 1 <= i <= self.total_d_layer:
                deep = self._prompt(self.deep_prompt_embeddings[i - 1][None], b).transpose(0, 1)
                x = torch.cat([x[:1], deep, x[1 + self.num_tokens:]], dim=0)
            elif i > self.total_d_layer:  # layers past the deep prompts run without prompt tokens
                x = torch.cat([x[:1], x[-h * w:]], dim=0)
            x = block(x)
        x = self.prompt_norm(x).transpose(0, 1)
        x = self.ln_post(x) @ self.proj
        glob = F.normalize(x[:, 0], dim=-1)
        dense = x[:, -h * w:].reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return [(F.normalize(dense, dim=1),), glob]
