"""MaskCLIP ViT: a CLIP image encoder that also returns dense, text-aligned patch embeddings.

Behaviour follows the SemiVL release (google-research/semivl
`third_party/maskclip/models/backbones/maskclip_vit.py`, `MaskClipVisionTransformer`): CLIP ViT
layout with mmseg parameter names, erf GELU, LayerNorm eps 1e-6, and the MaskCLIP "v-path" at
flagged layers, which replaces the token-mixing attention by its value projection so every patch
keeps its own CLIP embedding.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch.utils.checkpoint import checkpoint

from semiseg.utils.pos_embed import resize_pos_embed

logger = logging.getLogger(__name__)


class PatchEmbed(nn.Module):
    """Bias-free patch projection with mmseg 'corner' padding (right/bottom to a patch multiple)."""

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, embed_dims, patch_size, stride=patch_size,
                                    bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch_size
        pad_h = (p - x.shape[-2] % p) % p
        pad_w = (p - x.shape[-1] % p) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.projection(x)
        hw = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), hw


class PackedSelfAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`.

    Parameters and their creation/initialisation order are those of torch's
    `nn.MultiheadAttention` (`in_proj_weight` (3C, C), `in_proj_bias`, `out_proj`), so release
    checkpoints load key for key and a seeded random init draws the same numbers. Unlike
    `nn.MultiheadAttention` it never materialises the attention matrix, so flash /
    memory-efficient kernels run in training and inference alike (torch's module takes a
    non-SDPA fused path in no-grad inference). `batch_first=False` takes (L, B, C) input.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, dropout: float = 0.0,
                 batch_first: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim {embed_dim} is not divisible by num_heads {num_heads}')
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        else:
            self.register_parameter('in_proj_bias', None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        if self.batch_first:   # (B, L, 3C) -> 3 x (B, H, L, d)
            b, n = x.shape[:2]
            q, k, v = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:                  # (L, B, 3C) -> 3 x (B, H, L, d)
            n, b = x.shape[:2]
            q, k, v = qkv.view(n, b, 3, self.num_heads, self.head_dim).permute(2, 1, 3, 0, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if self.batch_first:
            out = out.transpose(1, 2).reshape(b, n, self.embed_dim)
        else:
            out = out.permute(2, 0, 1, 3).reshape(n, b, self.embed_dim)
        return self.out_proj(out)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """The v chunk of the input projection sent through out_proj (no token mixing)."""
        dims = self.embed_dim
        b = self.in_proj_bias
        v = F.linear(x, self.in_proj_weight[2 * dims:], None if b is None else b[2 * dims:])
        return self.out_proj(v)


class SelfAttention(nn.Module):
    """Holds the attention as `.attn` (mmcv's wrapper layout: keys `attn.attn.in_proj_weight`, ...)
    with a residual."""

    def __init__(self, embed_dims: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.attn = PackedSelfAttention(embed_dims, num_heads, bias=qkv_bias)

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return identity + self.attn(x)

    def value_path(self, x: torch.Tensor) -> torch.Tensor:
        """MaskCLIP branch: the v chunk of the input projection sent through out_proj."""
        return self.attn.value(x)


class FFN(nn.Module):
    """Linear -> GELU -> Linear with mmcv's parameter names (`layers.0.0`, `layers.1`)."""

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, hidden_dims), nn.GELU(), nn.Dropout(0.0)),
            nn.Linear(hidden_dims, embed_dims), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return identity + self.layers(x)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block x + MHA(ln1 x), x + FFN(ln2 x); optionally also the MaskCLIP v-path."""

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int,
                 qkv_bias: bool = True, ln_eps: float = 1e-6) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dims, eps=ln_eps)
        self.attn = SelfAttention(embed_dims, num_heads, qkv_bias)
        self.ln2 = nn.LayerNorm(embed_dims, eps=ln_eps)
        self.ffn = FFN(embed_dims, feedforward_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.ln1(x), identity=x)
        return self.ffn(self.ln2(x), identity=x)

    def forward_v(self, x: torch.Tensor) -> torch.Tensor:
        """The token-independent value path (the release's `return_qkv` branch); it never feeds the
        next layer."""
        v = self.attn.value_path(self.ln1(x)) + x
        return self.ffn(self.ln2(v), identity=v)


def _block_outputs(layer: TransformerEncoderLayer, x: torch.Tensor,
                   want_v: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(next tokens, v-path output or None) of one block; one unit for checkpointing."""
    return layer(x), (layer.forward_v(x) if want_v else None)


@MODELS.register_module()
class MaskClipVisionTransformer(nn.Module):
    """CLIP ViT with MaskCLIP dense outputs.

    `forward(img)` returns `[tuple(features), global_embedding]`:
    - out index i < num_layers: the v-path output of layer i, (B, C, h, w), no final norm;
    - out index == num_layers: the dense CLIP embedding (ln_post on the last v-path, `proj`,
      L2-normalised per pixel), (B, out_dims, h, w);
    - global_embedding: ln_post(cls) -> proj -> L2 norm, (B, out_dims).
    `out_indices=None` means `[num_layers]` (the guidance encoder).
    `with_cp=True` recomputes each block (and its v-path) in the backward pass instead of keeping
    its activations: less memory, the same values and gradients; off outside autograd.
    """

    def __init__(self,
                 img_size: int | Sequence[int] = 512,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 embed_dims: int = 768,
                 num_layers: int = 12,
                 num_heads: int = 12,
                 mlp_ratio: int = 4,
                 out_dims: int = 512,
                 out_indices: Sequence[int] | None = (0, 4, 12),
                 qkv_bias: bool = True,
                 ln_eps: float = 1e-6,
                 interpolate_mode: str = 'bicubic',
                 pretrained: str | None = None,
                 with_cp: bool = False) -> None:
        super().__init__()
        if isinstance(img_size, int):
            img_size = (img_size, img_size)
        self.img_size = tuple(img_size)
        self.patch_size = patch_size
        self.num_layers = num_layers
        self.interpolate_mode = interpolate_mode
        self.pretrained = pretrained
        self.with_cp = with_cp   # activation checkpointing of every block (recomputed in backward)
        out_indices = [num_layers] if out_indices is None else list(out_indices)
        bad = [i for i in out_indices if not 0 <= i <= num_layers]
        if bad:
            raise ValueError(f'out_indices {bad} outside [0, {num_layers}] '
                             f'(use {num_layers} for the dense CLIP embedding)')
        self.out_indices = out_indices
        # v-path at every collected layer below num_layers, and always at the last layer
        # (it produces the dense CLIP embedding).
        self.value_layers = {i for i in out_indices if i < num_layers} | {num_layers - 1}

        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        grid = self.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + 1, embed_dims))
        self.layers = nn.ModuleList([
            TransformerEncoderLayer(embed_dims, num_heads, mlp_ratio * embed_dims, qkv_bias, ln_eps)
            for _ in range(num_layers)])
        self.ln0 = nn.LayerNorm(embed_dims, eps=ln_eps)  # registered after the blocks, as released
        self.ln1 = nn.LayerNorm(embed_dims, eps=ln_eps)
        self.proj = nn.Conv2d(embed_dims, out_dims, 1, bias=False)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid of the configured image size (what pos_embed stores); floors, as mmseg
        does: 801 -> 50x50 stored, while an 801 input is padded to 816 = 51x51 tokens."""
        return (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    def init_weights(self, clip_state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Load CLIP weights when `pretrained` names a source (the release's
        `MaskClipVisionTransformer.init_weights`); `clip_state_dict`: that source, already read."""
        if self.pretrained:
            from semiseg.models.weights import load_clip_backbone_weights
            load_clip_backbone_weights(self, self.pretrained, clip_state_dict)

    def _embed(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x, hw = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        pos = self.pos_embed
        if x.shape[1] != pos.shape[1]:
            if pos.shape[1] != self.grid_size[0] * self.grid_size[1] + 1:
                raise ValueError(f'pos_embed has {pos.shape[1]} rows, expected '
                                 f'{self.grid_size[0] * self.grid_size[1] + 1} for img_size '
                                 f'{self.img_size}')
            pos = resize_pos_embed(pos, self.grid_size, hw, self.interpolate_mode)
        return self.ln0(x + pos), hw

    def _to_map(self, tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, _, c = tokens.shape
        return tokens[:, 1:].transpose(1, 2).reshape(b, c, hw[0], hw[1])

    def forward_intermediates(self, img: torch.Tensor) -> dict:
        """All named intermediates: `values` {layer: v-path map}, `dense`, `global`, `tokens`."""
        x, hw = self._embed(img)
        values: dict[int, torch.Tensor] = {}
        last = self.num_layers - 1
        v_last = None
        use_cp = self.with_cp and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            want_v = i in self.value_layers
            if use_cp:
                x, v = checkpoint(_block_outputs, layer, x, want_v, use_reentrant=False)
            else:
                x, v = _block_outputs(layer, x, want_v)
            if i == last:
                x = self.ln1(x)
                v_last = self.ln1(v)
                v = v_last
            if i in self.out_indices:
                values[i] = self._to_map(v, hw)
        dense = F.normalize(self.proj(self._to_map(v_last, hw)), dim=1)
        cls = F.linear(x[:, 0], self.proj.weight.flatten(1))
        return {'values': values, 'dense': dense, 'global': F.normalize(cls, dim=-1),
                'tokens': x, 'hw': hw}

    def forward(self, img: torch.Tensor) -> list:
        inter = self.forward_intermediates(img)
        feats = tuple(inter['dense'] if i == self.num_layers else inter['values'][i]
                      for i in self.out_indices)
        return [feats, inter['global']]


def freeze_for_spatial_finetuning(module: nn.Module,
                                  keep: Sequence[str] = ('attn', 'pos_embed')) -> int:
    """'ftap': freeze every parameter whose name lacks all of `keep`; returns #trainable."""
    trainable = 0
    for name, p in module.named_parameters():
        p.requires_grad = any(k in name for k in keep)
        if p.requires_grad:
            trainable += p.numel()
            logger.debug('Finetune %s', name)
    return trainable
