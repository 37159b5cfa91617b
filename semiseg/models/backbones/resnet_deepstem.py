"""UniMatch's ResNet-50/101 with a deep stem (LiheYoung/UniMatch `model/backbone/resnet.py`).

Stem: 3x3 conv 3->64 stride 2, BN, ReLU, 3x3 64->64, BN, ReLU, 3x3 64->128, BN (`bn1`), ReLU,
3x3/2 max pool. Then torchvision bottlenecks (stride in the 3x3 conv). With
`replace_stride_with_dilation=(False, False, True)` layer4 trades its stride for dilation 2,
torchvision's rule: the first block of a dilated stage keeps the previous dilation (1), the others
get the new one. Parameter and buffer names equal the release's, so its checkpoints load under
the `backbone.` prefix unchanged.

`stage_blocks`, `base_channels` and `stem_channels` shrink the network for the CPU demo
(`configs/models/dlv3p-resnet-tiny.py`); the defaults are the release's.

ImageNet weights (`pretrained`, a path) are read by `init_weights()`: the release's format
(`pretrained/resnet101.pth`: our keys, an ImageNet `fc.*` is dropped) or mmseg's `ResNetV1c`
layout (`stem.0.weight`, ...; only checkpoints with `stem_channels=128` fit).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
from mmseg.registry import MODELS

from semiseg.models.backbones._imagenet import load_backbone_weights, read_state_dict
from semiseg.models.weights import WeightsError

logger = logging.getLogger(__name__)

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
HOW_TO_PROVIDE = ('Download the ImageNet ResNet weights UniMatch links in its README '
                  '(pretrained/resnet50.pth, pretrained/resnet101.pth), or set pretrained=None for '
                  'random init.')
# mmseg ResNetV1c deep stem (conv, norm, ReLU) x 3 -> our `conv1` Sequential + `bn1`
_MMSEG_STEM = {'0': 'conv1.0', '1': 'conv1.1', '3': 'conv1.3', '4': 'conv1.4', '6': 'conv1.6', '7': 'bn1'}


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 (x4), BN after each, ReLU after the residual sum."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def convert_mmseg_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg `ResNetV1c` keys (`stem.N.*`; stages already named like ours) -> our keys."""
    out = {}
    for key, value in state_dict.items():
        m = re.match(r'stem\.(\d+)\.(.+)$', key)
        if m is not None:
            if m.group(1) not in _MMSEG_STEM:
                raise ValueError(f'unexpected mmseg stem key {key!r}')
            key = f'{_MMSEG_STEM[m.group(1)]}.{m.group(2)}'
        out[key] = value
    return out


def is_mmseg_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith('stem.') for k in state_dict)


@MODELS.register_module()
class DeepStemResNet(nn.Module):
    """`forward(x)` -> [stage outputs at `out_indices`] (0 = layer1 ... 3 = layer4), NCHW.

    UniMatch's DeepLabV3+ reads c1 = layer1 (1/4) and c4 = layer4 (1/16 with the default
    dilation), hence `out_indices=(0, 3)`.
    """

    def __init__(self,
                 depth: int | None = 101,
                 stage_blocks: Sequence[int] | None = None,
                 base_channels: int = 64,
                 stem_channels: int = 128,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, True),
                 out_indices: Sequence[int] = (0, 3),
                 pretrained: str | None = None) -> None:
        super().__init__()
        if stage_blocks is None:
            if depth not in STAGE_BLOCKS:
                raise ValueError(f'depth must be one of {sorted(STAGE_BLOCKS)} (or give stage_blocks), '
                                 f'got {depth}')
            stage_blocks = STAGE_BLOCKS[depth]
        if len(stage_blocks) != 4 or len(replace_stride_with_dilation) != 3:
            raise ValueError('need 4 stage_blocks and 3 replace_stride_with_dilation flags, got '
                             f'{tuple(stage_blocks)} and {tuple(replace_stride_with_dilation)}')
        bad = [i for i in out_indices if not 0 <= i < 4]
        if bad or not out_indices:
            raise ValueError(f'out_indices must be stage indices in [0, 3], got {tuple(out_indices)}')
        self.out_indices = tuple(out_indices)
        self.pretrained = pretrained
        half = stem_channels // 2
        self.conv1 = nn.Sequential(
            _conv3x3(3, half, stride=2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _conv3x3(half, stem_channels))
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        self._inplanes, self._dilation = stem_channels, 1
        dilate = (False, *replace_stride_with_dilation)
        for i, blocks in enumerate(stage_blocks):
            stage = self._make_stage(base_channels * 2 ** i, blocks, 1 if i == 0 else 2, dilate[i])
            self.add_module(f'layer{i + 1}', stage)
        self.out_channels = [base_channels * 2 ** i * Bottleneck.expansion for i in range(4)]
        self._init_random()

    def _make_stage(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self._inplanes, planes, stride, previous_dilation, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes, dilation=self._dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_random(self) -> None:
        """The release's init: Kaiming-normal (fan_out, ReLU) convolutions, BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Load ImageNet weights when `pretrained` is a path (random init otherwise)."""
        if not self.pretrained:
            return
        sd = read_state_dict(self.pretrained, HOW_TO_PROVIDE)
        if 'conv1.weight' in sd:
            raise WeightsError(f'{self.pretrained} is a ResNet with a single 7x7 stem conv (torchvision '
                               f"layout); UniMatch's ResNet has a 3-conv deep stem. {HOW_TO_PROVIDE}")
        if is_mmseg_layout(sd):
            logger.info('%s: mmseg ResNetV1c layout, renaming the stem keys', self.pretrained)
            sd = convert_mmseg_resnet(sd)
        load_backbone_weights(self, sd, str(self.pretrained))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = getattr(self, f'layer{i + 1}')(x)
            outs.append(x)
        return [outs[i] for i in self.out_indices]
