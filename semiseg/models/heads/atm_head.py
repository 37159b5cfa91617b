"""ZegCLIP's ATM head with relationship descriptor, single stage, no input projection
(google-research/semivl `third_party/zegclip/models/decode_heads/atm_head.py`, `ATMSingleHeadSeg`).

Class queries q = q_proj(concat(cls ⊙ text, text)) (2·dim → dim) attend to the patch tokens in
``num_layers`` post-norm decoder layers: cross-attention (``num_heads``, attention dropout 0.1)
→ residual → LN → FFN 4·dim (ReLU, dropout 0.1) → residual → LN; there is no self-attention.
Each layer's mask logits are its head-averaged, pre-softmax attention scores (B, N, h, w); the
last layer's are resized to the square img_size (ac=False) as ``pred_masks``.

Differences from the release, none of which changes the computation: the unused
``self_attn``/``norm1`` of torch's TransformerDecoderLayer (which the release subclasses) exist
for key-compatible checkpoints but are frozen (the release leaves them trainable; they never get
gradients either way); the concept-aggregation branch (unreachable with per-class text) is not implemented (a text
with a different row count raises); the trunc-normal(0.02) Linear / unit LayerNorm init the
release applies in init_weights is applied at construction. ``loss_decode`` (SegLossPlus) is
built and exposed for the trainer's 'mmseg' criterion.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.models import losses as _losses  # noqa: F401  (registers SegLossPlus)


class CrossAttention(nn.Module):
    """Multi-head attention returning (output, head-averaged pre-softmax scores).

    Written out rather than through `F.scaled_dot_product_attention`: the scores are the head's
    mask logits, so the (B, heads, N, hw) score matrix must exist anyway, and SDPA (whose kernels
    never return it) would compute q k^T a second time. The matrix is small (N class queries, not
    hw x hw), so the explicit softmax(scores) @ v costs little.
    """

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, nq, c = query.shape
        q, k, v = self._heads(self.q(query)), self._heads(self.k(memory)), self._heads(self.v(memory))
        scores = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(scores.softmax(dim=-1))
        out = self.proj((attn @ v).transpose(1, 2).reshape(b, nq, c))
        return out, scores.mean(dim=1)


class TPNDecoderLayer(nn.Module):
    """Post-norm cross-attention + FFN block (names follow torch's TransformerDecoderLayer)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        # never used in forward (as in the release); kept frozen so release checkpoints load
        # key for key without giving DDP parameters that never receive gradients
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn.requires_grad_(False)
        self.norm1.requires_grad_(False)
        self.multihead_attn = CrossAttention(dim, num_heads, attn_drop=0.1)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, scores = self.multihead_attn(q, memory)
        q = self.norm2(q + self.dropout2(out))
        q = self.norm3(q + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(q))))))
        return q, scores


class TPNDecoder(nn.Module):
    """A stack of decoder layers (``decoder_1.layers.i``, the release's key layout)."""

    def __init__(self, dim: int, num_heads: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([TPNDecoderLayer(dim, num_heads, 4 * dim)
                                     for _ in range(num_layers)])


@MODELS.register_module()
class ATMSingleHeadSeg(nn.Module):
    """ATM decoder: ``inputs = [[features, cls], text, conv]`` -> (B, N, S, S) mask logits."""

    uses_text = True   # class queries are built from the text embeddings

    def __init__(self,
                 img_size: int,
                 num_classes: int,
                 in_channels: int = 512,
                 channels: int = 512,
                 embed_dims: int = 512,
                 num_layers: int = 3,
                 num_heads: int = 8,
                 use_stages: int = 1,
                 use_proj: bool = False,
                 use_rd: bool = True,
                 seen_idx: Sequence[int] | None = None,
                 all_idx: Sequence[int] | None = None,
                 loss_decode: dict | None = None,
                 align_corners: bool = False) -> None:
        super().__init__()
        if use_stages != 1 or use_proj:
            raise ValueError('ATMSingleHeadSeg implements the release config only: use_stages=1, '
                             'use_proj=False')
        if in_channels != embed_dims:
            raise ValueError(f'without input projection in_channels ({in_channels}) must equal '
                             f'embed_dims ({embed_dims})')
        self.img_size = img_size
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.align_corners = align_corners
        self.use_rd = use_rd
        self.seen_idx = list(seen_idx) if seen_idx is not None else list(range(num_classes))
        self.all_idx = list(all_idx) if all_idx is not None else list(range(num_classes))
        self.input_proj_1 = nn.Identity()  # use_proj=False
        self.proj_norm_1 = nn.Identity()
        self.decoder_1 = TPNDecoder(embed_dims, num_heads, num_layers)
        self.q_proj = nn.Linear(2 * embed_dims if use_rd else embed_dims, embed_dims)
        if loss_decode is not None:
            loss_decode = dict(loss_decode)
            if loss_decode.get('type') == 'SegLossPlus':
                loss_decode.setdefault('num_classes', num_classes)
            self.loss_decode = MODELS.build(loss_decode)
        else:
            self.loss_decode = None
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _queries(self, text: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        text = text.to(cls.dtype).expand(cls.shape[0], -1, -1)  # (B, N, C)
        if not self.use_rd:
            return text
        return torch.cat([cls[:, None, :] * text, text], dim=-1)

    def forward(self, inputs: Sequence, force_output_pred_masks: bool = False):
        feats, cls = inputs[0][0], inputs[0][1]
        text = inputs[1]
        if text.shape[0] != self.num_classes:
            raise ValueError(f'text embedding has {text.shape[0]} rows for {self.num_classes} '
                             'classes (concept texts are not supported by the ATM head)')
        x = feats[0]
        b, c, h, w = x.shape
        memory = x.flatten(2).transpose(1, 2)  # (B, hw, C)
        q = self.q_proj(self._queries(text, cls))
        scores = None
        for layer in self.decoder_1.layers:
            q, scores = layer(q, memory)
        masks = scores.reshape(b, self.num_classes, h, w)
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode='bilinear',
                              align_corners=False)
        return {'pred_masks': masks} if force_output_pred_masks else masks
