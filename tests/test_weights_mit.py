"""MiT ImageNet weights: the SegFormer release format (`mit_bX.pth`) and mmseg's converted format
load strictly into `MiT`; wrong, missing or unsafe files fail with one clear error."""
from __future__ import annotations

import pytest
import torch
from mmseg.models.backbones import MixVisionTransformer

from semiseg.models.backbones.mit import MiT
from semiseg.models.weights import WeightsError

# mmseg's MixVisionTransformer ties dims to heads (embed_dims * num_heads); pick ours to match.
TINY = dict(arch='b0', embed_dims=(16, 32, 32, 64), depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4))


def tiny_mit(seed: int, **kw) -> MiT:
    torch.manual_seed(seed)
    model = MiT(**{**TINY, **kw})
    with torch.no_grad():  # every tensor distinct from a fresh init (LayerNorms are 1/0 there)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def to_mmseg(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg's tools/model_converters/mit2mmseg.py conversion, as it maps every key."""
    out = {}
    for k, v in sd.items():
        if k.startswith('head'):
            continue
        if k.startswith('patch_embed'):
            i = int(k.split('.')[0][len('patch_embed'):])
            out[k.replace(f'patch_embed{i}', f'layers.{i - 1}.0').replace('proj.', 'projection.')] = v
        elif k.startswith('block'):
            i = int(k.split('.')[0][len('block'):])
            nk = k.replace(f'block{i}', f'layers.{i - 1}.1')
            if 'attn.q.' in nk:
                out[nk.replace('q.', 'attn.in_proj_')] = torch.cat([v, sd[k.replace('q.', 'kv.')]])
            elif 'attn.kv.' in nk:
                continue
            elif 'attn.proj.' in nk:
                out[nk.replace('proj.', 'attn.out_proj.')] = v
            elif 'mlp.' in nk:
                if nk.endswith(('fc1.weight', 'fc2.weight')):
                    v = v.reshape(*v.shape, 1, 1)
                nk = nk.replace('mlp.', 'ffn.layers.').replace('fc1.', '0.')
                out[nk.replace('dwconv.dwconv.', '1.').replace('fc2.', '4.')] = v
            else:
                out[nk] = v
        elif k.startswith('norm'):
            i = int(k.split('.')[0][len('norm'):])
            out[k.replace(f'norm{i}', f'layers.{i - 1}.2')] = v
    return out


def release_file(tmp_path, sd, wrap: str | None = None, name='mit.pth'):
    obj = {**sd, 'head.weight': torch.randn(1000, 64), 'head.bias': torch.zeros(1000)}
    if wrap:
        obj = {wrap: obj}
    torch.save(obj, tmp_path / name)
    return str(tmp_path / name)


def assert_same_weights(model: MiT, ref: MiT) -> None:
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize('wrap', [None, 'state_dict', 'model'])
def test_release_format_loads_and_drops_classifier(tmp_path, wrap):
    src = tiny_mit(1)
    path = release_file(tmp_path, src.state_dict(), wrap)
    model = MiT(**TINY, pretrained=path)
    model.init_weights()
    assert_same_weights(model, src)


def test_mmseg_format_loads_and_matches_mmseg_model(tmp_path):
    src = tiny_mit(2, drop_path_rate=0.0).eval()
    mm_sd = to_mmseg(src.state_dict())
    mm = MixVisionTransformer(embed_dims=16, num_layers=[1, 2, 1, 1], num_heads=[1, 2, 2, 4]).eval()
    assert {k: v.shape for k, v in mm.state_dict().items()} == {k: v.shape for k, v in mm_sd.items()}
    mm.load_state_dict(mm_sd, strict=True)
    torch.save({'state_dict': mm_sd, 'meta': {'note': 'mit2mmseg'}}, tmp_path / 'mm.pth')
    model = MiT(**TINY, pretrained=str(tmp_path / 'mm.pth'))
    model.init_weights()
    assert_same_weights(model, src)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours, theirs = model.eval()(x), mm(x)
    for a, b in zip(ours, theirs):  # mmseg's patch-embed / reduction LayerNorms use eps 1e-6, ours 1e-5
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)


def test_missing_keys_name_them_in_one_line(tmp_path):
    sd = tiny_mit(3).state_dict()
    del sd['block2.1.attn.q.weight'], sd['norm4.bias']
    model = MiT(**TINY, pretrained=release_file(tmp_path, sd))
    with pytest.raises(WeightsError) as err:
        model.init_weights()
    msg = str(err.value)
    assert '\n' not in msg and 'block2.1.attn.q.weight' in msg and 'norm4.bias' in msg


def test_wrong_variant_and_unexpected_keys_fail(tmp_path):
    sd = tiny_mit(4).state_dict()
    model = MiT(**{**TINY, 'depths': (1, 1, 1, 1)}, pretrained=release_file(tmp_path, sd))
    with pytest.raises(WeightsError, match='unexpected: block2.1'):
        model.init_weights()
    model = MiT(arch='b0', pretrained=release_file(tmp_path, sd, name='b.pth'))
    with pytest.raises(WeightsError, match='shape mismatches'):
        model.init_weights()


class _NotATensor:
    pass


def test_unsafe_or_missing_files_fail(tmp_path):
    torch.save({'state_dict': tiny_mit(5).state_dict(), 'extra': _NotATensor()}, tmp_path / 'x.pth')
    with pytest.raises(WeightsError, match='x.pth'):
        MiT(**TINY, pretrained=str(tmp_path / 'x.pth')).init_weights()
    with pytest.raises(WeightsError, match='not found'):
        MiT(**TINY, pretrained=str(tmp_path / 'absent.pth')).init_weights()
    MiT(**TINY, pretrained=None).init_weights()  # nothing to load: random init stays
