"""Aligned Xception-65 of UniMatch's COCO model (LiheYoung/UniMatch `model/backbone/xception.py`).

Entry flow: 3x3 conv 3->32 stride 2, BN, ReLU, 3x3 32->64, BN, ReLU, then blocks 64->128 (stride
2), 128->256 (stride 2) and 256->728 (stride 2 at OS16, 1 at OS8); middle flow: 16 blocks of 728;
exit flow: block 728->1024 (grow last, no stride), separable convs 1536, 1536, 2048 (with ReLU).
At output stride 16 no convolution is dilated (the release's `rate = 16 // os`); OS8 moves the
third stride into dilation 2. Every BatchNorm has momentum 0.0003, as released.

A block is three separable convs (ReLU -> depthwise 3x3 -> BN -> pointwise 1x1 -> BN; the last one
carries the stride) plus a 1x1-conv+BN shortcut when the shape changes, else the identity. Two
behaviours of the release's in-place ReLUs are reproduced explicitly:
- identity-shortcut blocks (the middle flow) add the *rectified* input: the first separable
  conv's in-place ReLU also rewrites the tensor the shortcut holds (`Block.forward`);
- c1 is block2's second separable-conv output before any ReLU (block2's third conv is built
  with `inplace=False`, so its ReLU does not touch it).

Output: [c1 (256 ch, 1/4), c4 (2048 ch, 1/16)]. Names equal the release's, so its checkpoints
load under `backbone.` unchanged. ImageNet weights (`pretrained`, a path; the release's
`pretrained/xception.pth`): keys containing `itr`, `tmp` or `track` are dropped as the release
does; every remaining backbone weight must be in the file.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.models.backbones._imagenet import load_backbone_weights, read_state_dict

logger = logging.getLogger(__name__)

BN_MOMENTUM = 0.0003
MIDDLE_BLOCKS = 16
DROPPED_KEY_PARTS = ('itr', 'tmp', 'track')
HOW_TO_PROVIDE = ('Download the ImageNet Xception-65 weights UniMatch links in its README '
                  '(pretrained/xception.pth), or set pretrained=None for random init.')


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


class SeparableConv2d(nn.Module):
    """[ReLU] -> depthwise 3x3 -> BN -> [ReLU] -> pointwise 1x1 -> BN -> [ReLU].

    `relu_first=True`: one ReLU before the depthwise conv (block convs); False: a ReLU after each
    BN instead (the exit flow's conv3-5).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1,
                 relu_first: bool = True) -> None:
        super().__init__()
        self.relu_first = relu_first
        self.depthwise = nn.Conv2d(cin, cin, 3, stride=stride, padding=dilation, dilation=dilation,
                                   groups=cin, bias=False)
        self.bn1 = _bn(cin)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_first:
            x = F.relu(x)
        x = self.bn1(self.depthwise(x))
        if not self.relu_first:
            x = F.relu(x)
        x = self.bn2(self.pointwise(x))
        return x if self.relu_first else F.relu(x)


class Block(nn.Module):
    """Three separable convs (stride on the third) + shortcut; `forward` -> (out, second conv's output)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1,
                 grow_first: bool = True) -> None:
        super().__init__()
        if cin != cout or stride != 1:
            self.skip = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.skipbn = _bn(cout)
        else:
            self.skip = None
        mid = cout if grow_first else cin
        self.sepconv1 = SeparableConv2d(cin, mid, dilation=dilation)
        self.sepconv2 = SeparableConv2d(mid, cout, dilation=dilation)
        self.sepconv3 = SeparableConv2d(cout, cout, stride=stride, dilation=dilation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip is None:
            x = F.relu(x)  # the release's in-place ReLU rectifies the identity shortcut too
            shortcut = x
        else:
            shortcut = self.skipbn(self.skip(x))
        mid = self.sepconv2(self.sepconv1(x))
        return self.sepconv3(mid) + shortcut, mid


@MODELS.register_module()
class AlignedXception(nn.Module):
    """`forward(x)` -> [c1, c4]: block2's second separable conv (256 ch, 1/4), exit flow (2048 ch)."""

    def __init__(self, output_stride: int = 16, pretrained: str | None = None) -> None:
        super().__init__()
        strides = {8: (2, 1, 1), 16: (2, 2, 1)}
        if output_stride not in strides:
            raise ValueError(f'output_stride must be 8 or 16, got {output_stride}')
        s2, s3, s20 = strides[output_stride]
        rate = 16 // output_stride
        self.pretrained = pretrained
        self.out_channels = [256, 2048]
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.block1 = Block(64, 128, 2)
        self.block2 = Block(128, 256, s2)
        self.block3 = Block(256, 728, s3)
        for i in range(4, 4 + MIDDLE_BLOCKS):
            self.add_module(f'block{i}', Block(728, 728, dilation=rate))
        self.block20 = Block(728, 1024, s20, dilation=rate, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536, dilation=rate, relu_first=False)
        self.conv4 = SeparableConv2d(1536, 1536, dilation=rate, relu_first=False)
        self.conv5 = SeparableConv2d(1536, 2048, dilation=rate, relu_first=False)
        self._init_random()

    def _init_random(self) -> None:
        """The release's init: conv weights ~ N(0, 2 / (k*k*out_channels)), BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Load ImageNet weights when `pretrained` is a path (random init otherwise)."""
        if not self.pretrained:
            return
        sd = read_state_dict(self.pretrained, HOW_TO_PROVIDE)
        sd = {k: v for k, v in sd.items() if not any(part in k for part in DROPPED_KEY_PARTS)}
        load_backbone_weights(self, sd, str(self.pretrained))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x, _ = self.block1(x)
        x, c1 = self.block2(x)
        for i in range(3, 21):
            x, _ = getattr(self, f'block{i}')(x)
        x = self.conv5(self.conv4(self.conv3(x)))
        return [c1, x]
