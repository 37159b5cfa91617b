"""DPT head of UniMatch V2 (the Depth Anything variant), with the release's parameter names.

LiheYoung/UniMatch-V2 `model/semseg/dpt.py` (`DPTHead`) and `model/util/blocks.py`
(`FeatureFusionBlock`, `ResidualConvUnit`, `_make_scratch`). Four (B, D, h, w) encoder maps:

1. `projects[i]`: 1x1 conv D -> C_i (bias);
2. `resize_layers`: ConvT k4 s4 (x4), ConvT k2 s2 (x2), Identity, Conv k3 s2 p1 (/2);
3. `scratch.layerN_rn`: 3x3 conv C_i -> F, no bias;
4. fusion, coarse to fine: path4 = ref4(l4, size l3), path3 = ref3(path4, l3, size l2),
   path2 = ref2(path3, l2, size l1), path1 = ref1(path2, l1) at x2; a fusion block is
   `out_conv(resize(RCU2(a [+ RCU1(b)])))` with RCU(x) = x + conv2(relu(conv1(relu(x)))).
   `refinenet4.resConfUnit1` exists but is never called (kept so release checkpoints load);
5. `scratch.output_conv`: 3x3 conv F -> F, ReLU, 1x1 conv F -> classes.

The output is at 8 h x 8 w (2x the finest level); every resize is bilinear with
align_corners=True, so `align_corners = True` tells `SemiSegmentor` to resize the logits to the
input size the same way (the release: `F.interpolate(out, (14 h, 14 w), ..., align_corners=True)`).
No BatchNorm, no dropout, PyTorch default init (as the release). Registered as `DINOv2DPTHead`
because mmseg already registers its own, different `DPTHead`. Release keys `head.*` map to
`decode_head.*` (segmentor `release_key_prefixes={'head.': 'decode_head.'}`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), 3x3 convs with bias, non-inplace ReLU (the input is reused)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """out_conv(resize(RCU2(x [+ RCU1(skip)]))); resize to `size`, or x2 when none is given."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=True)
        return self.out_conv(x)


@MODELS.register_module()
class DINOv2DPTHead(nn.Module):
    """`head(feats)` -> logits (B, num_classes, 8h, 8w) for four (B, in_channels, h, w) maps.

    `features`: F, the fusion width; `out_channels`: (C_1..C_4), the projection widths (the
    release's name; stored as `project_channels`, since `out_channels` means the class count to
    the segmentor). Sizes: small 64 / (48, 96, 192, 384), base 128 / (96, 192, 384, 768), large
    256 / (256, 512, 1024, 1024).
    """

    align_corners = True

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024)) -> None:
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f'DPT needs 4 projection widths, got {list(out_channels)}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.features = features
        self.project_channels = list(out_channels)
        c = self.project_channels
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, ci, 1) for ci in c)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, ci in enumerate(c, start=1):
            setattr(self.scratch, f'layer{i}_rn', nn.Conv2d(ci, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f'refinenet{i}', FeatureFusionBlock(features))
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(features, num_classes, 1))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != 4:
            raise ValueError(f'DINOv2DPTHead reads 4 feature maps, got {len(feats)}')
        s = self.scratch
        l1, l2, l3, l4 = (rn(resize(proj(f))) for f, proj, resize, rn in zip(
            feats, self.projects, self.resize_layers,
            (s.layer1_rn, s.layer2_rn, s.layer3_rn, s.layer4_rn)))
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        return s.output_conv(path)
