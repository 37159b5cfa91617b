"""DINOv2 weight loading: local files in the official `dinov2_vit*14_pretrain.pth` layout and the
official download through torch.hub (mocked: no network in tests)."""
import urllib.error

import pytest
import torch

from semiseg.models.backbones import dinov2 as D
from semiseg.models.weights import WeightsError

torch.set_num_threads(1)

TINY = dict(arch=None, img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
            out_indices=[0, 1])


def official_layout(dim=16, depth=2, patch=8, grid=4, seed=0):
    """A random state dict with the key names and shapes of the official DINOv2 files (MLP FFN)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    sd = {'cls_token': r(1, 1, dim), 'pos_embed': r(1, grid * grid + 1, dim), 'mask_token': r(1, dim),
          'patch_embed.proj.weight': r(dim, 3, patch, patch), 'patch_embed.proj.bias': r(dim)}
    for i in range(depth):
        p = f'blocks.{i}.'
        sd.update({p + 'norm1.weight': 1 + r(dim), p + 'norm1.bias': r(dim),
                   p + 'attn.qkv.weight': r(3 * dim, dim), p + 'attn.qkv.bias': r(3 * dim),
                   p + 'attn.proj.weight': r(dim, dim), p + 'attn.proj.bias': r(dim),
                   p + 'ls1.gamma': 1 + r(dim), p + 'norm2.weight': 1 + r(dim), p + 'norm2.bias': r(dim),
                   p + 'mlp.fc1.weight': r(4 * dim, dim), p + 'mlp.fc1.bias': r(4 * dim),
                   p + 'mlp.fc2.weight': r(dim, 4 * dim), p + 'mlp.fc2.bias': r(dim),
                   p + 'ls2.gamma': 1 + r(dim)})
    sd.update({'norm.weight': 1 + r(dim), 'norm.bias': r(dim)})
    return sd


def test_local_file_in_official_layout_loads(tmp_path):
    sd = official_layout()
    path = tmp_path / 'dinov2_tiny_pretrain.pth'
    torch.save(sd, path)
    model = D.DINOv2ViT(**TINY, pretrained=str(path))
    model.init_weights()
    own = model.state_dict()
    assert own.keys() == sd.keys()
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def test_no_pretrained_keeps_random_init():
    model = D.DINOv2ViT(**TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize('edit, words', [
    (lambda sd: sd.pop('blocks.1.ls2.gamma'), ['1 missing keys', 'blocks.1.ls2.gamma']),
    (lambda sd: sd.update({'register_tokens': torch.zeros(1, 4, 16)}), ['1 unexpected keys', 'register_tokens']),
    (lambda sd: sd.update({'pos_embed': torch.zeros(1, 1370, 16)}), ['shape mismatches', 'pos_embed']),
])
def test_layout_errors_are_one_line(tmp_path, edit, words):
    sd = official_layout()
    edit(sd)
    path = tmp_path / 'bad.pth'
    torch.save(sd, path)
    with pytest.raises(WeightsError) as info:
        D.DINOv2ViT(**TINY, pretrained=str(path)).init_weights()
    msg = str(info.value)
    assert '\n' not in msg and str(path) in msg
    assert all(w in msg for w in words), msg


def test_missing_file_error(tmp_path):
    with pytest.raises(WeightsError, match='not found'):
        D.DINOv2ViT(**TINY, pretrained=str(tmp_path / 'nope.pth')).init_weights()


def test_official_urls():
    assert D.official_url('small') == \
        'https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth'
    assert D.official_url('base').endswith('dinov2_vitb14/dinov2_vitb14_pretrain.pth')
    assert D.official_url('large').endswith('dinov2_vitl14/dinov2_vitl14_pretrain.pth')


@pytest.fixture(scope='module')
def small_state_dict():
    return D.DINOv2ViT(arch='small').state_dict()


@pytest.mark.parametrize('name', ['hub', 'official'])
def test_hub_download_uses_weights_only(monkeypatch, small_state_dict, name):
    calls = []

    def fake(url, **kwargs):
        calls.append((url, kwargs))
        return {k: v.clone() for k, v in small_state_dict.items()}

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fake)
    monkeypatch.setattr(torch.hub, 'load', lambda *a, **k: pytest.fail('torch.hub.load executes code'))
    model = D.DINOv2ViT(arch='small', pretrained=name)
    model.init_weights()
    assert len(calls) == 1 and calls[0][0] == D.official_url('small')
    assert calls[0][1].get('weights_only') is True
    assert torch.equal(model.pos_embed, small_state_dict['pos_embed'])


def test_hub_without_network_is_one_line_naming_both_ways_out(monkeypatch):
    def offline(url, **kwargs):
        raise urllib.error.URLError('[Errno -3] Temporary failure\nin name resolution')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    with pytest.raises(WeightsError) as info:
        D.DINOv2ViT(arch='small', pretrained='official').init_weights()
    msg = str(info.value)
    assert '\n' not in msg
    assert D.official_url('small') in msg
    assert 'local copy of dinov2_vits14_pretrain.pth' in msg and 'network' in msg


def test_hub_refuses_modified_presets():
    with pytest.raises(WeightsError, match='local file'):
        D.DINOv2ViT(**TINY, pretrained='hub').init_weights()
