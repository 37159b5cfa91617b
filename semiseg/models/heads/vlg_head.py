"""VLG head: the SemiVL vision-language guided decoder (google-research/semivl
`model/decode_heads/vlg_head.py`, `VLGHead`).

Image-text cosine maps per class -> spatial reasoning (conv + residual ASPP, per class map) ->
semantic reasoning (transformers across class tokens at pooled locations, text concatenated)
-> upsampling with ViT (or conv) skips -> one logit map per class at the square img_size.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.models.backbones.maskclip_vit import TransformerEncoderLayer


def _gn(channels: int) -> nn.GroupNorm:
    """GroupNorm with channels/16 groups, as in the release."""
    return nn.GroupNorm(max(channels // 16, 1), channels)


class ASPPPooling(nn.Module):
    """Global-average branch of the ASPP, broadcast back with bilinear ac=True."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                 nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                 _gn(out_channels), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.gap(x), x.shape[-2:], mode='bilinear', align_corners=True)


class ASPPModule(nn.Module):
    """Residual ASPP: dilated branches + pooling, 1x1 projection, plus the input."""

    def __init__(self, channels: int, rates: Sequence[int] = (1, 6, 12, 18)) -> None:
        super().__init__()
        self.aspp_convs = nn.ModuleList()
        for r in rates:
            k, pad = (1, 0) if r == 1 else (3, r)
            self.aspp_convs.append(nn.Sequential(
                nn.Conv2d(channels, channels, k, padding=pad, dilation=r, bias=False),
                _gn(channels), nn.ReLU(True)))
        self.aspp_convs.append(ASPPPooling(channels, channels))
        self.project = nn.Sequential(
            nn.Conv2d((len(rates) + 1) * channels, channels, 1, bias=False),
            _gn(channels), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(torch.cat([branch(x) for branch in self.aspp_convs], dim=1))


class SemanticTransformer(nn.Module):
    """Attention across class tokens at each pooled location, text concatenated on channels.

    The block is the MaskCLIP ViT's, so its attention runs through `F.scaled_dot_product_attention`
    (`maskclip_vit.PackedSelfAttention`) with nn.MultiheadAttention's parameter names.
    """

    def __init__(self, channels: int, text_channels: int, num_heads: int,
                 pool_size: int | Sequence[int] | None) -> None:
        super().__init__()
        if isinstance(pool_size, int):
            pool_size = (pool_size, pool_size)
        self.pool_size = tuple(pool_size) if pool_size else None
        self.transformer = TransformerEncoderLayer(
            channels + text_channels, num_heads, 4 * channels, ln_eps=1e-5)

    def _pool(self, maps: torch.Tensor) -> torch.Tensor:
        """Average pooling with floor; maps smaller than the kernel (tiny border windows, which
        crash the release) are pooled with a kernel clipped to their size."""
        kernel = (min(self.pool_size[0], maps.shape[-2]), min(self.pool_size[1], maps.shape[-1]))
        return F.avg_pool2d(maps, kernel)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c, n, h, w = x.shape
        maps = x.permute(0, 2, 1, 3, 4).reshape(b * n, c, h, w)
        if self.pool_size is not None:
            maps = self._pool(maps)
        ph, pw = maps.shape[-2:]
        # ((b n) c ph pw) -> ((b ph pw) n c)
        tokens = maps.reshape(b, n, c, ph, pw).permute(0, 3, 4, 1, 2).reshape(b * ph * pw, n, c)
        text_tokens = text[:, None].expand(b, ph * pw, n, text.shape[-1])
        tokens = torch.cat([tokens, text_tokens.reshape(b * ph * pw, n, -1)], dim=-1)
        tokens = self.transformer(tokens)[..., :c]
        maps = tokens.reshape(b, ph, pw, n, c).permute(0, 3, 4, 1, 2).reshape(b * n, c, ph, pw)
        if self.pool_size is not None:
            maps = F.interpolate(maps, size=(h, w), mode='bilinear', align_corners=True)
        return x + maps.reshape(b, n, c, h, w).permute(0, 2, 1, 3, 4)


class Up(nn.Module):
    """x2 transposed conv, concat the (resized, class-tiled) skip, two conv-GN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels - skip_channels, 2, stride=2)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _gn(out_channels), nn.ReLU(True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _gn(out_channels), nn.ReLU(True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            skip = F.interpolate(skip, size=x.shape[-2:], mode='bilinear', align_corners=True)
            reps = x.shape[0] // skip.shape[0]
            skip = skip.repeat_interleave(reps, dim=0)  # matches the (b n) order of x
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


@MODELS.register_module()
class VLGHead(nn.Module):
    """SemiVL's vision-language guided decoder.

    Input `inputs = [backbone_out, text, conv_feats]` with `backbone_out = [features, global]`;
    the last feature is the dense CLIP embedding, the others are skips (used last-first).
    Returns `{'pred_masks': (B, N, img_size, img_size)}` (with `force_output_pred_masks`) or the
    raw (B, N, h', w') logits.
    """

    uses_text = True   # the builder resolves class-name text embeddings for this head

    def __init__(self,
                 img_size: int,
                 num_classes: int,
                 text_in_channels: int = 512,
                 text_channels: int = 128,
                 up_channels: Sequence[int] = (64, 32),
                 skip_in_channels: Sequence[int] = (768, 768),
                 skip_channels: Sequence[int] = (32, 16),
                 skip_from_conv_feat: bool = False,
                 num_layers: int = 2,
                 num_heads: int = 4,
                 channels: int = 128,
                 pool_size: int | Sequence[int] | None = 4,
                 conv1_ksize: int = 7,
                 aspp_rates: Sequence[int] = (1, 6, 12, 18),
                 loss_decode: dict | None = None,
                 align_corners: bool = False) -> None:
        super().__init__()
        if loss_decode is not None:
            raise ValueError('VLGHead computes no loss; set loss_decode=None '
                             '(losses live in semiseg.methods)')
        if len(skip_channels) != 2 or len(up_channels) != 2:
            raise ValueError('VLGHead has two upsampling stages: give two up_channels '
                             f'and two skip_channels (got {up_channels}, {skip_channels})')
        self.img_size = img_size
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.align_corners = align_corners
        self.skip_from_conv_feat = skip_from_conv_feat
        self.conv1 = nn.Conv2d(1, channels, conv1_ksize, padding=(conv1_ksize - 1) // 2)
        self.aspp = ASPPModule(channels, aspp_rates)
        self.layers = nn.ModuleList([
            SemanticTransformer(channels, text_channels, num_heads, pool_size)
            for _ in range(num_layers)])
        self.text_proj = nn.Sequential(nn.Linear(text_in_channels, text_channels), nn.ReLU())
        self.skip_proj = nn.ModuleList([
            nn.Sequential(nn.Conv2d(ci, co, 3, padding=1), nn.ReLU())
            for ci, co in zip(skip_in_channels, skip_channels)])
        self.up1 = Up(channels, up_channels[0], skip_channels[0])
        self.up2 = Up(up_channels[0], up_channels[1], skip_channels[1])
        self.head = nn.Conv2d(up_channels[1], 1, 3, padding=1)

    def _skips(self, feats: Sequence[torch.Tensor], conv_feats) -> list[torch.Tensor]:
        skips = list(feats[:-1])[::-1]
        if self.skip_from_conv_feat:
            if conv_feats is None:
                raise ValueError('skip_from_conv_feat=True needs a conv_encoder in the segmentor')
            skips += list(conv_feats)[::-1]
        if len(skips) != len(self.skip_proj):
            raise ValueError(f'VLGHead expects {len(self.skip_proj)} skip features, got '
                             f'{len(skips)}; check the backbone out_indices')
        return skips

    def forward(self, inputs: Sequence, force_output_pred_masks: bool = False):
        feats = inputs[0][0]
        conv_feats = inputs[2] if len(inputs) > 2 else None
        skips = self._skips(feats, conv_feats)
        img = feats[-1]
        b, c, h, w = img.shape
        text = inputs[1].float()
        if text.dim() == 2:
            text = text[None].expand(b, -1, -1)
        if list(text.shape) != [b, self.num_classes, c]:
            raise ValueError(f'text embedding shape {tuple(inputs[1].shape)} does not match '
                             f'{self.num_classes} classes x {c} channels')

        img = F.normalize(img, dim=1)
        text = F.normalize(text, dim=-1)
        x = torch.einsum('bchw,bnc->bnhw', img, text)

        x = self.aspp(self.conv1(x.reshape(b * self.num_classes, 1, h, w)))
        x = x.reshape(b, self.num_classes, -1, h, w).transpose(1, 2)  # b c n h w

        text_feats = self.text_proj(text)
        for layer in self.layers:
            x = layer(x, text_feats)

        skips = [proj(f) for proj, f in zip(self.skip_proj, skips)]
        x = x.transpose(1, 2).reshape(b * self.num_classes, -1, h, w)
        x = self.up2(self.up1(x, skips[0]), skips[1])
        x = self.head(x).reshape(b, self.num_classes, *x.shape[-2:])
        if force_output_pred_masks:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode='bilinear',
                              align_corners=self.align_corners)
            return {'pred_masks': x}
        return x
