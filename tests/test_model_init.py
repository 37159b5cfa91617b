"""Initialisation as released: per-layer weight/bias std of our heads against what the releases'
constructors give for the same shapes.

- AllSpark (xmed-lab/AllSpark `model/semseg/allspark.py`): `linear_fuse` is mmcv's `ConvModule`
  (Kaiming-normal at construction), the AllSpark module's Linears are Xavier-uniform
  (`AllSpark._init_weights`), every other layer is a plain PyTorch module (default init).
- UniMatch DeepLabV3+ (`model/semseg/deeplabv3plus.py`) and UniMatch V2's DPT head
  (`model/semseg/dpt.py`, `model/util/blocks.py`): plain PyTorch modules, default init.
The reference for a layer is a fresh module of the release's constructor with the layer's shape
(mmcv's own `ConvModule` for `linear_fuse`), so a changed init on either side shows as a std ratio.
"""
from __future__ import annotations

import math

import pytest
import torch
from mmseg.registry import MODELS
from torch import nn

import semiseg.models  # noqa: F401  (registers every model type)
from semiseg.models.builder import load_model_config


def plain_module(m: nn.Module) -> nn.Module:
    """A PyTorch module of m's type and shape, default-initialised."""
    bias = m.bias is not None
    if isinstance(m, nn.ConvTranspose2d):
        return nn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                  groups=m.groups, bias=bias, dilation=m.dilation)
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                         dilation=m.dilation, groups=m.groups, bias=bias)
    return nn.Linear(m.in_features, m.out_features, bias=bias)


def xavier_linear(m: nn.Linear) -> nn.Module:
    ref = plain_module(m)
    nn.init.xavier_uniform_(ref.weight)
    return ref


def mmcv_conv_module(m: nn.Conv2d) -> nn.Module:
    """The conv of mmcv's ConvModule as AllSpark's SegFormerHead builds `linear_fuse`."""
    from mmcv.cnn import ConvModule
    return ConvModule(m.in_channels, m.out_channels, m.kernel_size[0],
                      norm_cfg=dict(type='BN', requires_grad=True)).conv


def std_ratios(head: nn.Module, release_init: dict) -> dict[str, float]:
    """{param name: |std(ours) / std(release) - 1|} over the head's convs and Linears, where the
    allowed deviation is subtracted (sampling noise of a std estimate over n values)."""
    out = {}
    for name, m in head.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            continue
        make = next((f for prefix, f in release_init.items() if name.startswith(prefix)), plain_module)
        ref = make(m)
        for pname in ('weight', 'bias'):
            ours, theirs = getattr(m, pname), getattr(ref, pname)
            if ours is None or ours.numel() < 16:
                continue
            assert theirs is not None and ours.shape == theirs.shape, f'{name}.{pname}'
            allowed = max(0.1, 4 / math.sqrt(ours.numel()))
            out[f'{name}.{pname}'] = abs(float(ours.detach().std() / theirs.detach().std()) - 1) - allowed
    return out


def build_head(config: str) -> nn.Module:
    return MODELS.build(load_model_config(config)['model']['decode_head'])


def test_allspark_linear_fuse_is_mmcv_kaiming():
    torch.manual_seed(0)
    head = build_head('allspark-mitb5')
    conv = head.decoder.linear_fuse.conv
    assert conv.weight.shape == (768, 3072, 1, 1)
    assert abs(float(conv.weight.detach().std()) - math.sqrt(2 / 768)) < 1e-3  # fan_out = 768, ReLU gain
    assert float(mmcv_conv_module(conv).weight.std()) / float(nn.Conv2d(3072, 768, 1).weight.std()) > 4
    bn = head.decoder.linear_fuse.bn
    assert torch.equal(bn.weight, torch.ones(768)) and torch.equal(bn.bias, torch.zeros(768))


@pytest.mark.parametrize('config, release_init', [
    ('allspark-mitb5', {'decoder.linear_fuse.': mmcv_conv_module, 'allspark.attn.': xavier_linear}),
    ('dlv3p-r101', {}),
    ('dpt-dinov2s', {}),
])
def test_head_init_std_per_layer_equals_release(config, release_init):
    torch.manual_seed(0)
    ratios = std_ratios(build_head(config), release_init)
    assert len(ratios) > 5
    off = {k: round(v, 3) for k, v in ratios.items() if v > 0}
    assert not off, f'{config}: std differs from the release constructor beyond sampling noise: {off}'
