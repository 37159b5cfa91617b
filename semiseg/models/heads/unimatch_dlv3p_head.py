"""UniMatch's DeepLabV3+ decoder (LiheYoung/UniMatch `model/semseg/deeplabv3plus.py`,
`DeepLabV3Plus._decode`), as a head over the backbone's [c1, c4].

c4 -> ASPP (`head`: 1x1, three plain 3x3 atrous convs at `dilations`, image pooling, 1x1 projection;
c4_in/8 channels, BN + ReLU, no dropout) -> bilinear resize to c1 (align_corners=True);
c1 -> 1x1 conv to 48 + BN + ReLU (`reduce`); concat -> two 3x3 convs + BN + ReLU (`fuse`) ->
1x1 `classifier` with bias. Logits stay at c1's stride; `SemiSegmentor` upsamples them with
`align_corners=True`, as the release does. The release's top-level modules `head`, `reduce`,
`fuse`, `classifier` are ours under `decode_head.` (see `release_key_prefixes` in
`configs/models/dlv3p-r101.py`). BN layers are plain BatchNorm2d; the trainer converts them to
SyncBN for DDP. PyTorch default init, as in the release.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.models.heads.dlv3p_head import ASPP


@MODELS.register_module()
class UniMatchDeepLabV3PlusHead(nn.Module):
    """`head([c1, ..., c4])` -> logits (B, num_classes, h1, w1) at c1's resolution."""

    align_corners = True

    def __init__(self,
                 num_classes: int,
                 c1_in_channels: int = 256,
                 c4_in_channels: int = 2048,
                 dilations: Sequence[int] = (6, 12, 18),
                 c1_channels: int = 48,
                 channels: int = 256) -> None:
        super().__init__()
        if c4_in_channels % 8:
            raise ValueError(f'c4_in_channels={c4_in_channels} must be divisible by 8 (ASPP out = in/8)')
        if len(dilations) != 3:
            raise ValueError(f'ASPP takes three atrous rates, got {tuple(dilations)}')
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.head = ASPP(c4_in_channels, tuple(dilations))
        self.reduce = nn.Sequential(nn.Conv2d(c1_in_channels, c1_channels, 1, bias=False),
                                    nn.BatchNorm2d(c1_channels), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv2d(self.head.out_channels + c1_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=True)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        c1, c4 = inputs[0], inputs[-1]
        c4 = self.head(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode='bilinear', align_corners=True)
        return self.classifier(self.fuse(torch.cat([self.reduce(c1), c4], dim=1)))
