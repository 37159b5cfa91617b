"""DeepLabv3+ decoder for the exp-41 ablations (google-research/semivl
`model/decode_heads/dlv3p_head.py`, `DLV3PHead`): no text, plain per-class logits.

c4 (the deepest backbone feature) -> UniMatch-style ASPP (out = in/8, rates 6/12/18, BN, pooling
branch with align_corners=True, 1×1 projection, no residual); c1 (a low-level feature) -> 1×1
conv to 48 + BN + ReLU; c4 resized to c1 (ac=False), concatenated, two 3×3 convs to 256
(BN + ReLU) and a 1×1 classifier. The output is resized to the square img_size (release quirk).
BN layers are plain BatchNorm2d here; the trainer converts them to SyncBN for DDP. PyTorch
default init, as in the release (init_cfg None).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS


def _conv_bn_relu(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPPooling(nn.Module):
    """Image-level branch: GAP -> 1×1 conv -> BN -> ReLU -> bilinear (ac=True) back."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.gap(x), size=x.shape[-2:], mode='bilinear', align_corners=True)


class ASPP(nn.Module):
    """1×1 branch, three dilated 3×3 branches, pooling branch, 1×1 projection (no residual)."""

    def __init__(self, cin: int, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        cout = cin // 8
        self.out_channels = cout
        self.b0 = _conv_bn_relu(cin, cout, 1)
        self.b1 = _conv_bn_relu(cin, cout, 3, rates[0])
        self.b2 = _conv_bn_relu(cin, cout, 3, rates[1])
        self.b3 = _conv_bn_relu(cin, cout, 3, rates[2])
        self.b4 = ASPPPooling(cin, cout)
        self.project = _conv_bn_relu(5 * cout, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in (self.b0, self.b1, self.b2, self.b3, self.b4)], 1))


@MODELS.register_module()
class DLV3PHead(nn.Module):
    """DeepLabv3+ head on a ViT: `inputs = [[features, global], text, conv]`.

    c1 = features[c1_index], c4 = features[c4_index] (defaults: first and last).
    Returns (B, N, S, S) logits at the square img_size, or {'pred_masks': ...} with
    ``force_output_pred_masks``.
    """

    uses_text = False   # plain per-class logits; the text slot of the inputs is ignored

    def __init__(self,
                 img_size: int,
                 num_classes: int,
                 c1_in_channels: int,
                 c4_in_channels: int,
                 c1_channels: int = 48,
                 channels: int = 256,
                 dilations: Sequence[int] = (6, 12, 18),
                 c1_index: int = 0,
                 c4_index: int = -1,
                 align_corners: bool = False,
                 loss_decode: dict | None = None) -> None:
        super().__init__()
        if loss_decode is not None:
            raise ValueError('DLV3PHead computes no loss; set loss_decode=None '
                             '(losses live in semiseg.methods)')
        if c4_in_channels % 8:
            raise ValueError(f'c4_in_channels={c4_in_channels} must be divisible by 8 (ASPP out = in/8)')
        self.img_size = img_size
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.align_corners = align_corners
        self.c1_index, self.c4_index = c1_index, c4_index
        # module names follow the release (aspp.b0-b4/project, c1_proj, head.0-6)
        self.aspp = ASPP(c4_in_channels, dilations)
        self.c1_proj = _conv_bn_relu(c1_in_channels, c1_channels, 1)
        self.head = nn.Sequential(*_conv_bn_relu(c1_channels + self.aspp.out_channels, channels, 3),
                                  *_conv_bn_relu(channels, channels, 3),
                                  nn.Conv2d(channels, num_classes, 1))

    def forward(self, inputs: Sequence, force_output_pred_masks: bool = False):
        feats = inputs[0][0]
        c1, c4 = feats[self.c1_index], feats[self.c4_index]
        c4 = self.aspp(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode='bilinear', align_corners=False)
        x = self.head(torch.cat([self.c1_proj(c1), c4], dim=1))
        x = F.interpolate(x, size=(self.img_size, self.img_size), mode='bilinear',
                          align_corners=self.align_corners)
        return {'pred_masks': x} if force_output_pred_masks else x
