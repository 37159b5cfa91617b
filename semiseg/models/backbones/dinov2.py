"""DINOv2 ViT encoder of UniMatch V2, with the release's parameter names and numerics.

The layout is that of LiheYoung/UniMatch-V2 `model/backbone/dinov2.py` (`DINOv2(name)`, vendored
from facebookresearch/dinov2): 14x14/14 patch convolution, `[cls; patches] + pos_embed` with the
positional grid stored for 518x518 inputs (37x37, 1370 rows), pre-norm blocks
`x + ls1(attn(norm1 x))`, `x + ls2(mlp(norm2 x))` with LayerScale `gamma`s, LayerNorm eps 1e-6,
exact GELU, an unused `mask_token`, a final `norm` shared by every returned block output. Its
state-dict keys equal the official `dinov2_vit{s,b,l,g}14_pretrain.pth` files (and the release's
`backbone.*` keys), so weights load without renaming.

`forward(x)` returns the outputs of the `out_indices` blocks (2, 5, 8, 11 for small/base; 4, 11,
17, 23 for large), each through the final norm, cls token dropped, as (B, D, H/p, W/p) maps: the
four inputs of the DPT head (`DPT.forward` calls `get_intermediate_layers`).

Why our own implementation and not timm's `vit_small_patch14_dinov2`: timm resamples the
positional grid to an output *size* (with antialiasing), while DINOv2 passes a *scale factor*
(grid + 0.1) / 37 to `F.interpolate` (see `interpolate_pos_embed`). Bicubic interpolation with a
given scale factor samples at different source coordinates than with a given size, so at every
input other than 518x518 timm's features differ. Measured with timm 1.0.31 and the synthetic
release weights: identical at 518x518 (2e-6), but the golden logits move by 0.21 at 224x224 and
0.24 at 126x182 (2-3 % of the argmax pixels change), far outside the 1e-4 tolerance. timm also
has no `mask_token` (the official files carry one), so strict loading would need key surgery.

Switches: `attn_impl` ('sdpa', default: `F.scaled_dot_product_attention`, fast kernels on GPU;
'math': the release's explicit `softmax(q * d^-0.5 @ k^T) @ v`, the path its golden ran, since
xFormers is optional there); `with_cp` (activation checkpointing of every block, off by default).
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from mmseg.registry import MODELS

from semiseg.models.weights import WeightsError

logger = logging.getLogger(__name__)

# Presets of the release's `DINOv2(name)` / `DPT.intermediate_layer_idx` (LiheYoung/UniMatch-V2
# `model/backbone/dinov2.py`, `model/semseg/dpt.py`).
ARCHS: dict[str, dict] = {
    'small': dict(embed_dim=384, depth=12, num_heads=6, out_indices=(2, 5, 8, 11), ffn='mlp'),
    'base': dict(embed_dim=768, depth=12, num_heads=12, out_indices=(2, 5, 8, 11), ffn='mlp'),
    'large': dict(embed_dim=1024, depth=24, num_heads=16, out_indices=(4, 11, 17, 23), ffn='mlp'),
    'giant': dict(embed_dim=1536, depth=40, num_heads=24, out_indices=(9, 19, 29, 39), ffn='swiglu'),
}
OFFICIAL_TAGS = {'small': 'vits14', 'base': 'vitb14', 'large': 'vitl14', 'giant': 'vitg14'}
OFFICIAL_URL = 'https://dl.fbaipublicfiles.com/dinov2/dinov2_{tag}/dinov2_{tag}_pretrain.pth'
HUB_NAMES = ('hub', 'official')
ATTN_IMPLS = ('sdpa', 'math')


def official_url(arch: str) -> str:
    """Download address of the official ImageNet-pretrained DINOv2 weights of `arch`."""
    if arch not in OFFICIAL_TAGS:
        raise ValueError(f'no official DINOv2 weights for arch {arch!r}; choose one of {sorted(OFFICIAL_TAGS)}')
    return OFFICIAL_URL.format(tag=OFFICIAL_TAGS[arch])


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_hw: tuple[int, int],
                          offset: float = 0.1) -> torch.Tensor:
    """DINOv2's positional embedding for a `grid_hw` patch grid (cls row first, kept as is).

    Unchanged when the grid equals the stored square grid M x M. Otherwise the M x M grid is
    resized bicubically in fp32, antialias off, with `scale_factor=((h + offset) / M, (w +
    offset) / M)` (`DinoVisionTransformer.interpolate_pos_encoding`). This is deliberately not
    `semiseg.utils.pos_embed.resize_pos_embed`: giving F.interpolate a scale factor (instead of
    the output size) changes the sampling positions (src = (dst + 0.5) / scale - 0.5), and the
    release's weights and goldens depend on that (~0.1 in the logits). `offset=0` resizes to the
    size, as DINOv2 with registers does.
    """
    rows = pos_embed.shape[1] - 1
    side = int(math.isqrt(rows))
    if side * side != rows:
        raise ValueError(f'pos_embed has {rows} grid rows, not a square grid')
    h, w = int(grid_hw[0]), int(grid_hw[1])
    if (h, w) == (side, side):
        return pos_embed
    dtype = pos_embed.dtype
    cls_pos, grid = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    dim = grid.shape[-1]
    grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if offset:
        grid = F.interpolate(grid, scale_factor=((h + offset) / side, (w + offset) / side),
                             mode='bicubic', antialias=False)
    else:
        grid = F.interpolate(grid, size=(h, w), mode='bicubic', antialias=False)
    if tuple(grid.shape[-2:]) != (h, w):
        raise ValueError(f'pos_embed interpolation gave a {tuple(grid.shape[-2:])} grid, expected '
                         f'{(h, w)} (interpolate_offset {offset})')
    grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
    return torch.cat((cls_pos, grid), dim=1).to(dtype)


class PatchEmbed(nn.Module):
    """p x p / p convolution to D channels; (B, 3, H, W) -> (B, H/p * W/p, D)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv; `impl` 'sdpa' or the explicit 'math' form."""

    def __init__(self, dim: int, num_heads: int, impl: str = 'sdpa') -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dim {dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.impl = impl
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.impl == 'sdpa':
            out = F.scaled_dot_product_attention(q, k, v)
        else:  # the release's fallback when xFormers is absent (dinov2_layers/attention.py)
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """Per-channel scale `gamma` (the release builds it with init_values 1.0)."""

    def __init__(self, dim: int, init_values: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2 (hidden = ratio * dim)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """The giant model's FFN (dinov2 `SwiGLUFFNFused`): w3(silu(a) * b), (a, b) = w12(x);
    hidden = ratio * dim * 2/3 rounded up to a multiple of 8."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, ffn: str, init_values: float,
                 attn_impl: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attn_impl)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        ffn_cls = {'mlp': Mlp, 'swiglu': SwiGLUFFN}[ffn]
        self.mlp = ffn_cls(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


@MODELS.register_module()
class DINOv2ViT(nn.Module):
    """DINOv2 ViT returning normalised intermediate block outputs as NCHW maps.

    `arch` selects a preset ('small', 'base', 'large', 'giant'); `embed_dim`, `depth`,
    `num_heads`, `out_indices`, `ffn` override it (`arch=None` needs them all), e.g. for the
    tiny CPU demo. `img_size` / `patch_size` set the stored positional grid (518 / 14 in the
    release: 37 x 37). `pretrained`: None (random init), a local file in the official
    `dinov2_vit*14_pretrain.pth` layout, or 'hub' / 'official' (the official download, cached by
    torch.hub); read by `init_weights()`.
    """

    def __init__(self,
                 arch: str | None = 'small',
                 img_size: int = 518,
                 patch_size: int = 14,
                 in_chans: int = 3,
                 embed_dim: int | None = None,
                 depth: int | None = None,
                 num_heads: int | None = None,
                 out_indices: Sequence[int] | None = None,
                 ffn: str | None = None,
                 mlp_ratio: float = 4.0,
                 init_values: float = 1.0,
                 interpolate_offset: float = 0.1,
                 attn_impl: str = 'sdpa',
                 with_cp: bool = False,
                 pretrained: str | os.PathLike | None = None) -> None:
        super().__init__()
        if arch is not None and arch not in ARCHS:
            raise ValueError(f'unknown DINOv2 arch {arch!r}; choose one of {sorted(ARCHS)} or None')
        preset = dict(ARCHS[arch]) if arch is not None else {}
        given = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, ffn=ffn,
                     out_indices=tuple(out_indices) if out_indices is not None else None)
        spec = {**preset, **{k: v for k, v in given.items() if v is not None}}
        missing = [k for k in ('embed_dim', 'depth', 'num_heads', 'out_indices') if k not in spec]
        if missing:
            raise ValueError(f'DINOv2ViT(arch=None) needs {", ".join(missing)}')
        spec.setdefault('ffn', 'mlp')
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch_size {patch_size}')
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}')
        if spec['ffn'] not in ('mlp', 'swiglu'):
            raise ValueError(f"ffn must be 'mlp' or 'swiglu', got {spec['ffn']!r}")
        bad = [i for i in spec['out_indices'] if not 0 <= i < spec['depth']]
        if bad:
            raise ValueError(f'out_indices {bad} outside [0, {spec["depth"] - 1}]')

        self.arch = arch
        # the official weights fit a preset's structure at patch 14 with the 37x37 grid
        structure = ('embed_dim', 'depth', 'num_heads', 'ffn')
        self.is_preset = (arch is not None and all(spec[k] == preset[k] for k in structure)
                          and (img_size, patch_size) == (518, 14))
        self.embed_dim = self.num_features = spec['embed_dim']
        self.num_heads = spec['num_heads']
        self.patch_size = patch_size
        self.pos_grid = img_size // patch_size
        self.out_indices = list(spec['out_indices'])
        self.interpolate_offset = interpolate_offset
        self.with_cp = with_cp
        self.pretrained = pretrained
        dim = self.embed_dim

        # parameter registration order = the release's state-dict order
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid ** 2 + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # in the official files; never read
        self.patch_embed = PatchEmbed(patch_size, in_chans, dim)
        self.blocks = nn.ModuleList(
            Block(dim, self.num_heads, mlp_ratio, spec['ffn'], init_values, attn_impl)
            for _ in range(spec['depth']))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._random_init()

    def _random_init(self) -> None:
        """The release's init (`DinoVisionTransformer.init_weights`): pos_embed trunc-normal 0.02,
        cls_token N(0, 1e-6), Linear weights trunc-normal 0.02 with zero bias."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Load the pretrained weights named by `pretrained` (nothing when it is None)."""
        if not self.pretrained:
            return
        source = str(self.pretrained)
        if source in HUB_NAMES:
            state_dict, where = self._download(), official_url(self.arch)
        else:
            where = os.path.expanduser(source)
            if not os.path.isfile(where):
                raise WeightsError(f'DINOv2 weight file not found: {where}; pass the official '
                                   f'dinov2_{OFFICIAL_TAGS.get(self.arch, "vit*14")}_pretrain.pth '
                                   "or pretrained='official' to download it")
            state_dict = torch.load(where, map_location='cpu', weights_only=True)
        self.load_official_state_dict(state_dict, where)
        logger.info('loaded DINOv2 %s weights from %s', self.arch, where)

    def _download(self) -> dict[str, torch.Tensor]:
        if not self.is_preset:
            raise WeightsError(f'the official DINOv2 weights fit the unmodified presets only; this '
                               f'backbone (arch {self.arch!r}, dim {self.embed_dim}) needs a local file')
        url = official_url(self.arch)
        try:
            return torch.hub.load_state_dict_from_url(url, map_location='cpu', weights_only=True,
                                                      progress=False)
        except Exception as err:  # noqa: BLE001 - any download failure gets one actionable line
            reason = ' '.join(f'{type(err).__name__}: {err}'.split())
            raise WeightsError(
                f'cannot download DINOv2 {self.arch} weights from {url} ({reason}); either set the '
                f'backbone pretrained to a local copy of {url.rsplit("/", 1)[-1]}, or run once with '
                f'network access (it is then cached under {torch.hub.get_dir()}/checkpoints)') from err

    def load_official_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = 'state dict') -> None:
        """Strict load of the official / release key layout, with a one-line error."""
        if not isinstance(state_dict, dict):
            raise WeightsError(f'{source}: expected a plain {{name: tensor}} DINOv2 state dict, '
                               f'got {type(state_dict).__name__}')
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        shapes = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
        if missing or unexpected or shapes:
            parts = [f'{len(x)} {what} (e.g. {", ".join(x[:3])})'
                     for x, what in ((missing, 'missing keys'), (unexpected, 'unexpected keys'),
                                     (shapes, 'shape mismatches (file vs model)')) if x]
            raise WeightsError(f'{source} does not fit DINOv2 {self.arch or "custom"} '
                               f'(dim {self.embed_dim}, depth {len(self.blocks)}, grid {self.pos_grid}): '
                               + '; '.join(parts))
        self.load_state_dict(state_dict, strict=True)

    # ------------------------------------------------------------------ forward
    def set_attn_impl(self, impl: str) -> None:
        """Switch every block between 'sdpa' and the explicit 'math' attention."""
        if impl not in ATTN_IMPLS:
            raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {impl!r}')
        for blk in self.blocks:
            blk.attn.impl = impl

    def patch_grid(self, x: torch.Tensor) -> tuple[int, int]:
        """(H / p, W / p); the sides must be multiples of the patch size (as the release asserts)."""
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f'DINOv2 input sides must be multiples of the patch size {self.patch_size}, '
                             f'got {h}x{w}; resize or pad the image (evaluation: size_multiple)')
        return h // self.patch_size, w // self.patch_size

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int] | None = None,
                              output_fmt: str = 'NCHW') -> list[torch.Tensor]:
        """Outputs of blocks `indices` (default `out_indices`), each through the final norm, cls
        dropped: (B, D, h, w) for 'NCHW', (B, h*w, D) tokens in row-major order for 'NLC'."""
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        indices = list(self.out_indices if indices is None else indices)
        if not indices or not all(0 <= i < len(self.blocks) for i in indices):
            raise ValueError(f'block indices {indices} outside [0, {len(self.blocks) - 1}]')
        gh, gw = self.patch_grid(x)
        b = x.shape[0]
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), self.patch_embed(x)), dim=1)
        tokens = tokens + interpolate_pos_embed(self.pos_embed, (gh, gw), self.interpolate_offset)
        outputs = []
        use_cp = self.with_cp and torch.is_grad_enabled()
        for i, blk in enumerate(self.blocks[:max(indices) + 1]):
            if use_cp:
                tokens = torch.utils.checkpoint.checkpoint(blk, tokens, use_reentrant=False)
            else:
                tokens = blk(tokens)
            if i in indices:
                outputs.append(self.norm(tokens)[:, 1:])
        if output_fmt == 'NLC':
            return outputs
        return [t.transpose(1, 2).reshape(b, self.embed_dim, gh, gw) for t in outputs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_intermediates(x, self.out_indices, 'NCHW')
