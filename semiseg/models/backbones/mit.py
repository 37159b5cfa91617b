"""Mix Transformer (MiT-B0..B5), the SegFormer encoder AllSpark uses.

Four stages; each starts with an overlapping patch embedding (conv 7x7/s4/p3, then 3x3/s2/p1,
+ LayerNorm) and stacks blocks of spatial-reduction attention (K/V from a conv k=s=sr + LayerNorm)
and a Mix-FFN (fc1, 3x3 depthwise conv, GELU, fc2); each stage ends with a LayerNorm and yields a
NCHW map at stride 4, 8, 16, 32. Parameter names equal those of NVlabs/SegFormer
`mmseg/models/backbones/mix_transformer.py` (`MixVisionTransformer`), which AllSpark copies
(xmed-lab/AllSpark `model/backbone/mit.py`), so release checkpoints load under `backbone.`.

LayerNorm eps as the release: 1e-6 in the blocks and the stage-end norms, PyTorch's default 1e-5
in the patch embeddings and the spatial-reduction norms. Stochastic depth rises linearly from 0 to
`drop_path_rate` (0.1 in the release) over all blocks.

ImageNet weights (`pretrained`: a file path) load in `init_weights()`, strictly, from the
SegFormer release format (`mit_b5.pth`: our names plus a classification `head.*`, optionally in
`{'state_dict': ...}` / `{'model': ...}`, with `module.` / `backbone.` prefixes) or from mmseg's
converted format (`layers.0.0.projection`, written by mmseg's
`tools/model_converters/mit2mmseg.py`; converted back here). Every tensor must match: MiT-B1..B5
share their shapes, so a file of another depth is refused rather than partly loaded.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from timm.layers import DropPath

from semiseg.models.backbones._imagenet import read_state_dict
from semiseg.models.weights import WeightsError

logger = logging.getLogger(__name__)

# name -> (embed_dims, depths); every variant has heads 1/2/5/8, sr 8/4/2/1, mlp ratio 4.
MIT_ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    'b0': ((32, 64, 160, 256), (2, 2, 2, 2)),
    'b1': ((64, 128, 320, 512), (2, 2, 2, 2)),
    'b2': ((64, 128, 320, 512), (3, 4, 6, 3)),
    'b3': ((64, 128, 320, 512), (3, 4, 18, 3)),
    'b4': ((64, 128, 320, 512), (3, 8, 27, 3)),
    'b5': ((64, 128, 320, 512), (3, 6, 40, 3)),
}
BLOCK_LN_EPS = 1e-6
HOW_TO_PROVIDE = ('Give the SegFormer release ImageNet checkpoint (mit_bX.pth, NVlabs/SegFormer) or '
                  "an mmseg-converted MiT checkpoint as the backbone's `pretrained`.")


def mit_output_size(size: int) -> int:
    """Side of the stage-4 grid for an input side `size` (the four patch-embedding convs)."""
    size = (size + 2 * 3 - 7) // 4 + 1
    for _ in range(3):
        size = (size + 2 * 1 - 3) // 2 + 1
    return size


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlap, then LayerNorm on the tokens."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Attention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced map."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float,
                 proj_drop: float, sr_ratio: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        src = x
        if self.sr_ratio > 1:
            src = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            src = self.norm(src)
        k, v = self.kv(src).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class DWConv(nn.Module):
    """3x3 depthwise conv on tokens laid out as an h x w map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """fc1 -> depthwise 3x3 -> GELU -> fc2 (the 'Mlp' of the release)."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), h, w)))
        return self.drop(self.fc2(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), x + mlp(norm2(x)), with drop path."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop: float,
                 attn_drop: float, drop_path: float, sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


@MODELS.register_module()
class MiT(nn.Module):
    """Mix Transformer encoder; `MiT(arch='b5')` is AllSpark's `mit_b5`.

    `embed_dims` / `depths` override the variant's (e.g. a tiny demo encoder). Returns
    [c1, c2, c3, c4] NCHW at strides 4, 8, 16, 32 (sides as `mit_output_size` computes them).
    """

    def __init__(self,
                 arch: str = 'b5',
                 embed_dims: Sequence[int] | None = None,
                 depths: Sequence[int] | None = None,
                 num_heads: Sequence[int] = (1, 2, 5, 8),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 mlp_ratio: float = 4.0,
                 in_chans: int = 3,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 pretrained: str | None = None) -> None:
        super().__init__()
        if arch not in MIT_ARCHS:
            raise ValueError(f'unknown MiT arch {arch!r}; choose one of {sorted(MIT_ARCHS)}')
        arch_dims, arch_depths = MIT_ARCHS[arch]
        self.embed_dims = tuple(embed_dims if embed_dims is not None else arch_dims)
        self.depths = tuple(depths if depths is not None else arch_depths)
        for name, seq in (('embed_dims', self.embed_dims), ('depths', self.depths),
                          ('num_heads', num_heads), ('sr_ratios', sr_ratios)):
            if len(seq) != 4:
                raise ValueError(f'MiT needs 4 stages; {name} has {len(seq)} entries')
        self.pretrained = pretrained
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        cur = 0
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            cin = in_chans if i == 0 else self.embed_dims[i - 1]
            dim = self.embed_dims[i]
            setattr(self, f'patch_embed{i + 1}', OverlapPatchEmbed(patch, stride, cin, dim))
            setattr(self, f'block{i + 1}', nn.ModuleList(
                Block(dim, num_heads[i], mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                      dpr[cur + j], sr_ratios[i]) for j in range(self.depths[i])))
            setattr(self, f'norm{i + 1}', nn.LayerNorm(dim, eps=BLOCK_LN_EPS))
            cur += self.depths[i]
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        """The release's random init: trunc-normal Linears, He-normal (fan-out) convs."""
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(1, 5):
            x, h, w = getattr(self, f'patch_embed{i}')(x)
            for blk in getattr(self, f'block{i}'):
                x = blk(x, h, w)
            x = getattr(self, f'norm{i}')(x)
            x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w).contiguous()
            outs.append(x)
        return outs

    def init_weights(self) -> None:
        """Load ImageNet weights when `pretrained` names a file (strict, see module doc)."""
        if not self.pretrained:
            return
        sd = read_mit_checkpoint(self.pretrained)
        own = self.state_dict()
        problems = []
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        shape = [f'{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})' for k, v in sd.items()
                 if k in own and v.shape != own[k].shape]
        for what, keys in (('missing', missing), ('unexpected', unexpected), ('shape mismatches', shape)):
            if keys:
                more = f' and {len(keys) - 6} more' if len(keys) > 6 else ''
                problems.append(f'{len(keys)} {what}: {", ".join(keys[:6])}{more}')
        if problems:  # unexpected keys matter too: b1..b5 share their shapes and differ in depth
            raise WeightsError(f'{self.pretrained} does not fit MiT(embed_dims={self.embed_dims}, '
                               f'depths={self.depths}): {"; ".join(problems)}. {HOW_TO_PROVIDE}')
        self.load_state_dict(sd, strict=True)
        logger.info('loaded MiT ImageNet weights from %s (%d tensors)', self.pretrained, len(sd))


# --------------------------------------------------------------------------- checkpoint formats

def read_mit_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A MiT state dict with our (the SegFormer release's) names, from either supported format,
    without the ImageNet classifier `head.*`."""
    sd = read_state_dict(path, HOW_TO_PROVIDE)
    if any(k.startswith('layers.') for k in sd):
        sd = mmseg_to_mit(sd)
    dropped = [k for k in sd if k.startswith('head.')]
    if dropped:
        logger.info('dropping the ImageNet classifier (%s) from %s', ', '.join(dropped), path)
    return {k: v for k, v in sd.items() if not k.startswith('head.')}


def mmseg_to_mit(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo mmseg's `mit2mmseg` conversion: `layers.{i}.0` patch embeds, `layers.{i}.1.{j}`
    blocks (fused q/kv `in_proj`, 1x1-conv FFN `ffn.layers.{0,1,4}`), `layers.{i}.2` norms."""
    out: dict[str, torch.Tensor] = {}
    for key, v in sd.items():
        parts = key.split('.')
        if parts[0] != 'layers':
            out[key] = v
            continue
        stage, kind, rest = int(parts[1]) + 1, parts[2], parts[3:]
        if kind == '0':
            name = '.'.join(rest).replace('projection.', 'proj.')
            out[f'patch_embed{stage}.{name}'] = v
        elif kind == '2':
            out[f'norm{stage}.{".".join(rest)}'] = v
        elif kind == '1':
            prefix, sub = f'block{stage}.{rest[0]}', '.'.join(rest[1:])
            if sub.startswith('attn.attn.in_proj_'):
                which = sub[len('attn.attn.in_proj_'):]
                dim = v.shape[0] // 3
                out[f'{prefix}.attn.q.{which}'] = v[:dim]
                out[f'{prefix}.attn.kv.{which}'] = v[dim:]
            elif sub.startswith('attn.attn.out_proj.'):
                out[f'{prefix}.attn.proj.{sub.rsplit(".", 1)[1]}'] = v
            elif sub.startswith('ffn.layers.'):
                idx, which = sub[len('ffn.layers.'):].split('.')
                name = {'0': 'fc1', '1': 'dwconv.dwconv', '4': 'fc2'}.get(idx)
                if name is None:
                    raise WeightsError(f'unrecognised mmseg MiT key {key!r}')
                if name != 'dwconv.dwconv' and which == 'weight':
                    v = v.reshape(v.shape[0], v.shape[1])
                out[f'{prefix}.mlp.{name}.{which}'] = v
            else:  # norm1, norm2, attn.sr, attn.norm keep their names
                out[f'{prefix}.{sub}'] = v
        else:
            raise WeightsError(f'unrecognised mmseg MiT key {key!r}')
    return out
