"""The exp-0 tiny VLM end to end on CPU: build from the run config, forward/backward, feature
perturbation, MaskCLIP guidance, freezing rules and the state-dict contract."""
import pytest
import torch
import torch.nn as nn

from semiseg.experiments.registry import get_runs
from semiseg.models import build_segmentor

torch.set_num_threads(1)
NCLASS = 5


def tiny(run: int = 2, **cfg_overrides):
    cfg = {**get_runs(0)[run], **cfg_overrides}
    g = torch.Generator().manual_seed(0)
    text = nn.functional.normalize(torch.randn(NCLASS, 512, generator=g), dim=-1).half().float()
    mcc = nn.functional.normalize(torch.randn(NCLASS, 512, generator=g), dim=-1)
    return build_segmentor(cfg, pretrained=False, text_embedding=text, mcc_text_embedding=mcc)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return tiny()


def test_forward_backward_shapes(model):
    model.train()
    x = torch.randn(8, 3, 64, 64)
    logits = model(x)
    assert logits.shape == (8, NCLASS, 64, 64)
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.backbone.parameters()] + \
            [p.grad for p in model.decode_head.parameters()]
    assert all(g is not None for g in grads)  # 'ft': everything trains
    assert all(p.grad is None for p in model.clip_encoder.parameters())
    model.zero_grad()


def test_non_crop_input_sizes(model):
    model.eval()
    with torch.no_grad():
        for h, w in ((64, 40), (70, 90), (33, 64), (2, 64), (64, 3)):  # border windows, padding
            assert model(torch.randn(1, 3, h, w)).shape == (1, NCLASS, h, w)


def test_need_fp_returns_clean_and_perturbed(model):
    model.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    clean, fp = model(x, need_fp=True)
    assert clean.shape == fp.shape == (2, NCLASS, 64, 64)
    assert not torch.allclose(clean, fp)
    model.eval()
    with torch.no_grad():
        # the clean half equals a plain forward (no dropout anywhere in eval mode)
        c2, _ = model(x, need_fp=True)
        assert torch.allclose(c2, model(x), atol=1e-5)


def test_fp_rate_zero_changes_nothing(model):
    model.eval()
    model.fp_rate = 0.0
    try:
        with torch.no_grad():
            clean, fp = model(torch.randn(2, 3, 64, 64), need_fp=True)
        assert torch.allclose(clean, fp, atol=1e-5)
    finally:
        model.fp_rate = 0.5


def test_guidance_encoder_frozen_and_eval(model):
    model.train()
    assert model.has_guidance
    assert not model.clip_encoder.training
    assert not any(p.requires_grad for p in model.clip_encoder.parameters())
    labels = model.guidance_labels(torch.randn(3, 3, 64, 48), conf_thresh=0.0)
    assert labels.shape == (3, 64, 48) and labels.dtype == torch.int64
    assert labels.max() < NCLASS  # threshold 0: every pixel labelled
    high = model.guidance_labels(torch.randn(3, 3, 64, 48), conf_thresh=1.01)
    assert (high == 255).all()
    assert all(n.startswith(('backbone.', 'decode_head.', 'clip_encoder.'))
               for n in model.state_dict())


def test_state_dict_has_no_text_buffers(model):
    keys = list(model.state_dict())
    assert not any(k.endswith('text_embedding') for k in keys)
    assert keys[0].startswith('backbone.') and keys[-1].startswith('clip_encoder.')
    assert model.num_classes == NCLASS


def test_no_clip_encoder_without_guidance():
    m = tiny(run=1)  # lambda 0 -> clip_encoder None
    assert m.clip_encoder is None and not m.has_guidance
    with pytest.raises(RuntimeError, match='no MaskCLIP guidance'):
        m.guidance_labels(torch.randn(1, 3, 64, 64), 0.5)


def test_disable_dropout_switches_off_dropout_modules():
    m = tiny(run=1)
    m.decode_head.extra_dropout = nn.Dropout(0.5)
    m.train()
    m(torch.randn(1, 3, 64, 64))
    assert not m.decode_head.extra_dropout.training
    m2 = tiny(run=1, disable_dropout=False)
    m2.decode_head.extra_dropout = nn.Dropout(0.5)
    m2.train()
    m2(torch.randn(1, 3, 64, 64))
    assert m2.decode_head.extra_dropout.training


def test_only_tensor_mode():
    m = tiny(run=1)
    with pytest.raises(ValueError, match="mode='tensor'"):
        m(torch.randn(1, 3, 64, 64), mode='loss')
