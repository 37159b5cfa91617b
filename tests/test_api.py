"""Public API: build_model from (exp, run) with overrides, checkpoint formats, predict."""
import numpy as np
import pytest
import torch

from semiseg.api import build_model, load_checkpoint, predict
from semiseg.models.checkpoint import CheckpointError

torch.set_num_threads(1)


def emb(rows, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, 512, generator=g), dim=-1)


@pytest.fixture(scope='module')
def model():
    return build_model(0, 2, pretrained=False, text_embedding=emb(5), mcc_text_embedding=emb(5, 1))


def test_build_model_with_npy_paths_and_overrides(tmp_path):
    np.save(tmp_path / 't.npy', emb(5).numpy().astype(np.float16))
    np.save(tmp_path / 'm.npy', emb(5, 1).numpy().astype(np.float16))
    m = build_model(0, 2, pretrained=False, text_embedding=tmp_path / 't.npy',
                    mcc_text_embedding=str(tmp_path / 'm.npy'), fp_rate=0.25,
                    disable_dropout=False)
    assert m.fp_rate == 0.25 and m.disable_dropout is False
    assert torch.equal(m.text_embedding, torch.from_numpy(np.load(tmp_path / 't.npy')).float())
    assert m.has_guidance
    m2 = build_model(0, 2, pretrained=False, text_embedding=emb(5), clip_encoder=None)
    assert not m2.has_guidance
    with pytest.raises(FileNotFoundError, match='.npy'):
        build_model(0, 0, pretrained=False, text_embedding=tmp_path / 'missing.npy')
    with pytest.raises(IndexError, match='runs 0..6'):
        build_model(0, 7, pretrained=False, text_embedding=emb(5))


def test_model_returns_logits_and_predict(model):
    model.eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        assert model(x).shape == (1, 5, 70, 90)
    assert predict(model, x, 'sliding_window', 64).shape == (1, 5, 70, 90)


def _fresh(model):
    other = build_model(0, 2, pretrained=False, text_embedding=emb(5), mcc_text_embedding=emb(5, 1))
    assert not torch.equal(other.backbone.pos_embed, model.backbone.pos_embed)
    return other


@pytest.mark.parametrize('fmt', ['ours', 'release', 'plain', 'no_guidance'])
def test_checkpoint_formats_roundtrip(model, tmp_path, fmt):
    sd = model.state_dict()
    if fmt == 'ours':
        obj = {'model': sd, 'optimizer': {}, 'epoch': 3}
    elif fmt == 'release':
        obj = {'model': {f'module.{k}': v for k, v in sd.items()}, 'optimizer': {}, 'epoch': 1}
    elif fmt == 'plain':
        obj = sd
    else:  # release eval.py strips the guidance encoder
        obj = {k: v for k, v in sd.items() if not k.startswith('clip_encoder.')}
    torch.save(obj, tmp_path / 'c.pth')
    other = _fresh(model)
    out = load_checkpoint(other, tmp_path / 'c.pth')
    assert 'model' in out
    for k, v in model.state_dict().items():
        if fmt != 'no_guidance' or not k.startswith('clip_encoder.'):
            assert torch.equal(other.state_dict()[k], v), k


def test_checkpoint_into_model_without_guidance(model, tmp_path):
    torch.save({'model': model.state_dict()}, tmp_path / 'c.pth')
    m = build_model(0, 1, pretrained=False, text_embedding=emb(5))
    load_checkpoint(m, tmp_path / 'c.pth')
    assert torch.equal(m.backbone.pos_embed, model.backbone.pos_embed)


def test_checkpoint_errors(model, tmp_path):
    sd = dict(model.state_dict())
    del sd['decode_head.head.bias']
    sd['decode_head.extra.weight'] = torch.zeros(1)
    torch.save({'model': sd}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match=r'1 missing keys .*decode_head.head.bias.*'
                                              r'1 unexpected keys .*decode_head.extra.weight'):
        load_checkpoint(model, tmp_path / 'bad.pth')
    sd = dict(model.state_dict())
    sd['backbone.pos_embed'] = torch.zeros(1, 5, 64)
    torch.save(sd, tmp_path / 'shape.pth')
    with pytest.raises(CheckpointError, match='shape mismatches.*pos_embed'):
        load_checkpoint(model, tmp_path / 'shape.pth')
    (tmp_path / 'corrupt.pth').write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='is a text file, not a torch checkpoint'):
        load_checkpoint(model, tmp_path / 'corrupt.pth')
    torch.save({'epoch': 3, 'note': 'x'}, tmp_path / 'nosd.pth')
    with pytest.raises(CheckpointError, match='holds no state dict'):
        load_checkpoint(model, tmp_path / 'nosd.pth')
    with pytest.raises(CheckpointError, match='does not exist'):
        load_checkpoint(model, tmp_path / 'absent.pth')


def test_load_into_ddp_like_wrapper(model, tmp_path):
    torch.save({'model': model.state_dict()}, tmp_path / 'c.pth')
    wrapper = torch.nn.DataParallel(_fresh(model))   # on the CPU: a plain wrapper with .module
    load_checkpoint(wrapper, tmp_path / 'c.pth')
    assert torch.equal(wrapper.module.backbone.pos_embed, model.backbone.pos_embed)


def test_text_free_model_builds_without_text_or_open_clip(monkeypatch, tmp_path):
    """The DeepLabv3+ ablation's head reads no text: no embedding is looked for, open_clip is not used."""
    import sys
    monkeypatch.setitem(sys.modules, 'open_clip', None)           # any import of open_clip fails
    monkeypatch.setenv('SEMISEG_TEXT_EMBEDDINGS', str(tmp_path / 'none'))
    monkeypatch.setenv('HOME', str(tmp_path))                      # an empty text-embedding cache
    model = build_model(41, 2, pretrained=False, data_root=str(tmp_path))
    assert model.text_embedding is None and not model.has_guidance
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 21, 64, 64)
