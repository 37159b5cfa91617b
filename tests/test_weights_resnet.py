"""ImageNet weights for UniMatch's backbones: the release's files (`pretrained/resnet101.pth`,
`pretrained/xception.pth`) and mmseg's ResNetV1c layout, written here in those formats.

The ResNets are depth 50 at 1/8 width (same keys and code path as the release's, 0.4M parameters).
"""
from __future__ import annotations

import pytest
import torch
from mmseg.models.backbones import ResNetV1c
from mmseg.registry import MODELS

import semiseg.models  # noqa: F401  (registers every model type)
from semiseg.models.backbones.resnet_deepstem import DeepStemResNet
from semiseg.models.backbones.xception import AlignedXception
from semiseg.models.builder import load_model_config
from semiseg.models.weights import WeightsError

NARROW = dict(depth=50, base_channels=8, stem_channels=16)


def randomised(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """`module`'s keys with fresh random values that keep activations O(1) (ints kept)."""
    g = torch.Generator().manual_seed(seed)

    def draw(key: str, v: torch.Tensor) -> torch.Tensor:
        if not v.is_floating_point():
            return v.clone()
        if v.dim() > 1:
            return torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        if key.endswith('running_var'):
            return torch.rand(v.shape, generator=g) + 0.5
        return torch.randn(v.shape, generator=g) * 0.1 + (1.0 if key.endswith('weight') else 0.0)

    return {k: draw(k, v) for k, v in module.state_dict().items()}


def assert_loaded(module: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    own = module.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in own if not k.endswith('num_batches_tracked'))


def test_release_resnet_file_loads_and_drops_fc(tmp_path):
    src = DeepStemResNet(**NARROW)
    sd = randomised(src, 0)
    ckpt = {k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}
    ckpt.update({'fc.weight': torch.randn(1000, 256), 'fc.bias': torch.randn(1000)})  # ImageNet classifier
    path = tmp_path / 'resnet50.pth'
    torch.save(ckpt, path)  # the release's files are bare state dicts
    model = DeepStemResNet(**NARROW, pretrained=str(path))
    model.init_weights()
    assert_loaded(model, sd)


def test_missing_backbone_keys_are_one_line_error(tmp_path):
    sd = randomised(DeepStemResNet(**NARROW), 0)
    del sd['layer3.0.conv2.weight'], sd['bn1.running_var']
    path = tmp_path / 'resnet50.pth'
    torch.save(sd, path)
    model = DeepStemResNet(**NARROW, pretrained=str(path))
    with pytest.raises(WeightsError) as err:
        model.init_weights()
    msg = str(err.value)
    assert '\n' not in msg and 'lacks 2' in msg
    assert 'layer3.0.conv2.weight' in msg and 'bn1.running_var' in msg


def test_shape_mismatch_and_unreadable_files_raise(tmp_path):
    wide = tmp_path / 'wide.pth'
    torch.save(DeepStemResNet(depth=50, base_channels=16, stem_channels=16).state_dict(), wide)
    with pytest.raises(WeightsError, match='shape mismatches'):
        DeepStemResNet(**NARROW, pretrained=str(wide)).init_weights()
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(WeightsError, match='is a text file, not a torch checkpoint'):
        DeepStemResNet(**NARROW, pretrained=str(junk)).init_weights()
    torchvision = tmp_path / 'torchvision.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'bn1.weight': torch.ones(64)}, torchvision)
    with pytest.raises(WeightsError, match='7x7 stem'):
        DeepStemResNet(**NARROW, pretrained=str(torchvision)).init_weights()
    with pytest.raises(WeightsError, match='not found'):
        DeepStemResNet(**NARROW, pretrained=str(tmp_path / 'absent.pth')).init_weights()


def test_mmseg_resnetv1c_checkpoint_converts_and_computes_the_same(tmp_path):
    """mmseg's ResNetV1c with stem_channels=2*64/8, strides (1,2,2,1), dilations (1,1,1,2) and
    contract_dilation is UniMatch's network; its checkpoint loads and gives the same features."""
    mm = ResNetV1c(depth=50, stem_channels=16, base_channels=8, strides=(1, 2, 2, 1),
                   dilations=(1, 1, 1, 2), contract_dilation=True, out_indices=(0, 3))
    mm.load_state_dict(randomised(mm, 1))
    path = tmp_path / 'resnet50_v1c.pth'
    torch.save({'meta': {}, 'state_dict': {'backbone.' + k: v for k, v in mm.state_dict().items()}}, path)
    model = DeepStemResNet(**NARROW, pretrained=str(path))
    model.init_weights()
    mm.eval()
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = mm(x), model(x)
    assert len(got) == 2
    for a, b in zip(expected, got):
        assert a.shape == b.shape and bool(torch.isfinite(a).all())
        assert float((a - b).abs().max()) < 1e-5 * float(a.abs().max())


def test_model_config_init_weights_loads_backbone(tmp_path):
    """SemiSegmentor.init_weights() reads the backbone's `pretrained` file (dlv3p-resnet-tiny)."""
    cfg = load_model_config('dlv3p-resnet-tiny')['model']
    cfg['decode_head']['num_classes'] = 3
    model = MODELS.build(cfg)
    sd = randomised(model.backbone, 2)
    path = tmp_path / 'tiny.pth'
    torch.save({'state_dict': sd}, path)
    model.backbone.pretrained = str(path)
    model.init_weights()
    assert_loaded(model.backbone, sd)


def test_xception_file_drops_itr_tmp_track_keys(tmp_path):
    model = AlignedXception()
    sd = randomised(model, 3)  # includes every `num_batches_tracked` ('track')
    ckpt = dict(sd)
    ckpt.update({'block1.itr': torch.zeros(1), 'block5.sepconv1.tmp': torch.zeros(7, 7)})
    path = tmp_path / 'xception.pth'
    torch.save(ckpt, path)
    model.pretrained = str(path)
    model.init_weights()
    assert_loaded(model, sd)
    del ckpt['conv5.bn2.weight']
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match='conv5.bn2.weight'):
        model.init_weights()
