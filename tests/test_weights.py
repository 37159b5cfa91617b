"""CLIP ViT-B/16 weight conversion (google-research/semivl `third_party/maskclip/convert_clip_weights.py`)
and loading into the MaskCLIP backbone (`MaskClipVisionTransformer.init_weights`)."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from semiseg.models import weights as W
from semiseg.utils.pos_embed import resize_pos_embed

REF = Path(__file__).resolve().parents[1].parent / 'shared' / 'reference'
torch.set_num_threads(1)  # shared CPU; tiny models are faster on one thread


def openai_visual_state_dict(width=768, layers=12, patch=16, grid=14, out=512, seed=0):
    """Random CLIP visual tower in the OpenAI state-dict layout (fp16, like the release file)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).half()

    sd = {'visual.class_embedding': r(width), 'visual.positional_embedding': r(grid * grid + 1, width),
          'visual.proj': r(width, out), 'visual.conv1.weight': r(width, 3, patch, patch),
          'visual.ln_pre.weight': 1 + r(width), 'visual.ln_pre.bias': r(width),
          'visual.ln_post.weight': 1 + r(width), 'visual.ln_post.bias': r(width),
          'token_embedding.weight': r(10, 8), 'text_projection': r(8, out)}
    for i in range(layers):
        p = f'visual.transformer.resblocks.{i}.'
        sd.update({p + 'attn.in_proj_weight': r(3 * width, width), p + 'attn.in_proj_bias': r(3 * width),
                   p + 'attn.out_proj.weight': r(width, width), p + 'attn.out_proj.bias': r(width),
                   p + 'ln_1.weight': 1 + r(width), p + 'ln_1.bias': r(width),
                   p + 'mlp.c_fc.weight': r(4 * width, width), p + 'mlp.c_fc.bias': r(4 * width),
                   p + 'mlp.c_proj.weight': r(width, 4 * width), p + 'mlp.c_proj.bias': r(width),
                   p + 'ln_2.weight': 1 + r(width), p + 'ln_2.bias': r(width)})
    return sd


def maskclip(**kw):
    from semiseg.models.backbones.maskclip_vit import MaskClipVisionTransformer
    return MaskClipVisionTransformer(**kw)


TINY = dict(img_size=(64, 64), patch_size=16, embed_dims=64, num_layers=2, num_heads=2,
            mlp_ratio=4, out_dims=32, out_indices=[0, 2])


def test_convert_renames_and_reshapes():
    sd = openai_visual_state_dict(width=64, layers=2, out=32)
    conv = W.convert_clip_visual(sd)
    assert 'proj.weight' in conv and all(k.startswith('backbone.') for k in conv if k != 'proj.weight')
    assert not any('token_embedding' in k or 'text_projection' in k for k in conv)
    assert conv['backbone.cls_token'].shape == (1, 1, 64)
    assert conv['backbone.pos_embed'].shape == (1, 197, 64)
    assert torch.equal(conv['proj.weight'], sd['visual.proj'].float().t())
    assert torch.equal(conv['backbone.layers.1.attn.attn.in_proj_weight'],
                       sd['visual.transformer.resblocks.1.attn.in_proj_weight'].float())
    assert torch.equal(conv['backbone.layers.0.ffn.layers.0.0.bias'],
                       sd['visual.transformer.resblocks.0.mlp.c_fc.bias'].float())
    assert torch.equal(conv['backbone.layers.0.ffn.layers.1.weight'],
                       sd['visual.transformer.resblocks.0.mlp.c_proj.weight'].float())
    assert torch.equal(conv['backbone.layers.1.ln2.weight'],
                       sd['visual.transformer.resblocks.1.ln_2.weight'].float())
    assert 'backbone.ln0.bias' in conv and 'backbone.ln1.weight' in conv
    assert 'backbone.patch_embed.projection.weight' in conv
    assert all(v.dtype == torch.float32 for v in conv.values())


def test_full_size_keys_match_release_state_dict(tmp_path):
    shapes_f = REF / 'semivl_exp40_state_dict_shapes.json'
    if not shapes_f.is_file():
        pytest.skip('reference state-dict table not available')
    shapes = json.loads(shapes_f.read_text())
    expected = {k[len('module.backbone.'):]: tuple(s) for k, s in shapes.items()
                if k.startswith('module.backbone.')}
    sd = openai_visual_state_dict()
    ckpt = tmp_path / 'ViT-B-16-random.pt'
    torch.save(sd, ckpt)
    torch.set_num_threads(1)
    module = maskclip(img_size=(512, 512), out_indices=[0, 4, 12])
    missing, unexpected = W.load_clip_backbone_weights(module, ckpt)
    assert missing == [] and unexpected == []
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert own == expected
    # values moved, with the release's loading rules (MaskClipVisionTransformer.init_weights)
    assert torch.equal(module.cls_token.data.flatten(), sd['visual.class_embedding'].float())
    assert torch.equal(module.proj.weight.data, sd['visual.proj'].float().t()[:, :, None, None])
    pos = sd['visual.positional_embedding'].float()
    assert torch.equal(module.pos_embed.data[0, 0], pos[0])
    grid = F.interpolate(pos[1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2), size=(32, 32),
                         mode='bicubic', align_corners=False)
    torch.testing.assert_close(module.pos_embed.data[0, 1:], grid.flatten(2)[0].t())
    assert torch.equal(module.layers[7].attn.attn.out_proj.weight.data,
                       sd['visual.transformer.resblocks.7.attn.out_proj.weight'].float())


def test_converted_file_roundtrip_and_cli(tmp_path):
    from semiseg.tools import convert_clip

    src = tmp_path / 'clip.pt'
    torch.save({'state_dict': {'module.' + k: v for k, v in openai_visual_state_dict(64, 2, out=32).items()}},
               src)
    out = tmp_path / 'converted.pth'
    assert convert_clip.main(['--src', str(src), '--out', str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    assert saved['meta'] == {} and 'backbone.cls_token' in saved['state_dict']
    a, b = maskclip(**TINY), maskclip(**TINY)
    W.load_clip_backbone_weights(a, src)
    W.load_clip_backbone_weights(b, out)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    # 14x14 -> 4x4 grid resize happened
    assert a.pos_embed.shape == (1, 17, 64)


class _Root(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Leaf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript_archive(sd, path):
    """Save a state dict as a TorchScript archive, the format of OpenAI's ViT-B-16.pt."""
    root = _Root()
    for key, value in sd.items():
        *mods, name = key.split('.')
        m = root
        for part in mods:
            if not hasattr(m, part):
                m.add_module(part, _Leaf())
            m = getattr(m, part)
        m.register_parameter(name, nn.Parameter(value, requires_grad=False))
    torch.jit.script(root).save(str(path))
    return path


def test_openai_torchscript_archive(tmp_path):
    sd = openai_visual_state_dict(64, 2, out=32)
    path = _torchscript_archive(sd, tmp_path / 'ViT-B-16.pt')
    read = W.read_checkpoint_state_dict(path)
    assert set(read) == set(sd) and torch.equal(read['visual.proj'], sd['visual.proj'])
    module = maskclip(**TINY)
    W.load_clip_backbone_weights(module, path)
    assert torch.equal(module.ln0.weight.data, sd['visual.ln_pre.weight'].float())


def test_clear_errors(tmp_path):
    with pytest.raises(W.WeightsError, match='not found'):
        W.load_clip_backbone_weights(maskclip(**TINY), tmp_path / 'missing.pt')
    torch.save({'backbone.something_else': torch.zeros(3)}, tmp_path / 'other.pth')
    with pytest.raises(W.WeightsError, match='none of the 1 weights'):
        W.load_clip_backbone_weights(maskclip(**TINY), tmp_path / 'other.pth')
    torch.save({'token_embedding.weight': torch.zeros(3, 2)}, tmp_path / 'text_only.pt')
    with pytest.raises(W.WeightsError, match='no visual'):
        W.load_clip_backbone_weights(maskclip(**TINY), tmp_path / 'text_only.pt')
    torch.save(openai_visual_state_dict(32, 1, out=32), tmp_path / 'narrow.pt')
    with pytest.raises(W.WeightsError, match='do not fit'):
        W.load_clip_backbone_weights(maskclip(**TINY), tmp_path / 'narrow.pt')


def test_resize_pos_embed_keeps_cls_and_is_identity_at_same_size():
    pe = torch.randn(1, 1 + 14 * 14, 8)
    assert resize_pos_embed(pe, (14, 14), (14, 14)) is pe
    out = resize_pos_embed(pe, (14, 14), (50, 50))
    assert out.shape == (1, 2501, 8) and torch.equal(out[:, 0], pe[:, 0])


def test_clip_weights_source_precedence(monkeypatch, tmp_path):
    """Run option > $SEMISEG_CLIP_WEIGHTS > the release's pretrained/ViT-B-16.pt > open_clip's download."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(W.ENV_CLIP, raising=False)
    assert W.clip_weights_source({}) == 'openai'
    (tmp_path / 'pretrained').mkdir()
    (tmp_path / 'pretrained' / 'ViT-B-16.pt').write_bytes(b'x')
    assert W.clip_weights_source({}) == W.RELEASE_CLIP_PATH
    monkeypatch.setenv(W.ENV_CLIP, '/env/clip.pt')
    assert W.clip_weights_source({}) == '/env/clip.pt'
    assert W.clip_weights_source({'clip_weights': '/run/clip.pt'}) == '/run/clip.pt'


def test_missing_clip_weights_error_names_both_ways_out(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'open_clip', None)
    with pytest.raises(Exception) as err:
        W.openai_clip_state_dict()
    assert 'clip_weights=PATH' in str(err.value) and W.ENV_CLIP in str(err.value)


def test_backbone_and_guidance_encoder_read_one_clip_source_once(tmp_path, monkeypatch):
    """The VLM's backbone and guidance encoder name the same CLIP file: it is read once, and both
    get its weights."""
    from semiseg.api import build_model
    from semiseg.models.segmentors import vlm
    model = build_model(0, 2, pretrained=False, text_embedding=torch.randn(5, 512),
                        mcc_text_embedding=torch.randn(5, 512))
    torch.manual_seed(1)
    source = {f'backbone.{k}': torch.randn_like(v) for k, v in model.clip_encoder.state_dict().items()}
    path = W.save_converted(source, tmp_path / 'clip.pth')
    reads = []
    monkeypatch.setattr(vlm, 'clip_backbone_state_dict',
                        lambda src: reads.append(src) or W.clip_backbone_state_dict(src))
    model.backbone.pretrained = model.clip_encoder.pretrained = str(path)
    model.init_weights()
    assert reads == [str(path)]
    for encoder in (model.backbone, model.clip_encoder):
        assert torch.equal(encoder.pos_embed, source['backbone.pos_embed'])
        assert torch.equal(encoder.cls_token, source['backbone.cls_token'])
