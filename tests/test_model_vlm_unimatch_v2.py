"""Experiment 65's pieces (SemiVL's model trained with UniMatch V2), on the exp-0 tiny VLM with its
tiny guidance encoder: complementary dropout draws one mask for every feature level, as
LiheYoung/UniMatch-V2 `model/semseg/dpt.py` (`DPT.forward`, comp_drop) multiplies one mask onto its
four levels; the EMA teacher shares the student's frozen parameters instead of copying them."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from semiseg.experiments.registry import get_runs
from semiseg.methods import build_method
from semiseg.models import build_segmentor
from semiseg.models.perturb import apply_shared_channel_mask, complementary_masks
from semiseg.utils.modules import unwrap

NCLASS = 5


def v2_cfg() -> dict:
    """Exp 0 run 2 (tiny VLM + tiny MaskCLIP guidance) with exp 65's method keys."""
    exp65 = get_runs(65)[0]
    return {**get_runs(0)[2], **{k: exp65[k] for k in ('method', 'conf_thresh', 'ema_decay', 'lock_backbone',
                                                       'mcc_conf_thresh', 'mcc_loss_reduce')}}


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    text = nn.functional.normalize(torch.randn(NCLASS, 512, generator=g), dim=-1)
    mcc = nn.functional.normalize(torch.randn(NCLASS, 512, generator=g), dim=-1)
    return build_segmentor(v2_cfg(), pretrained=False, text_embedding=text, mcc_text_embedding=mcc)


def head_inputs(model: nn.Module, x: torch.Tensor, **kw) -> list[torch.Tensor]:
    """The feature maps the decode head receives (ViT levels, then conv-encoder maps)."""
    seen = []
    hook = model.decode_head.register_forward_pre_hook(lambda mod, args, kwargs=None: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(x, **kw)
    finally:
        hook.remove()
    (feats, _), _, conv = seen[0]
    return list(feats) + list(conv or ())


def test_comp_drop_multiplies_one_mask_onto_every_level(model):
    model.eval()  # no dropout anywhere: the clean and the perturbed call see the same features
    x = torch.randn(4, 3, 64, 64)
    clean = head_inputs(model, x)
    assert len(clean) >= 2  # several levels, else sharing is trivially true
    torch.manual_seed(5)
    perturbed = head_inputs(model, x, comp_drop=True)
    torch.manual_seed(5)
    mask = complementary_masks(2, max(f.shape[1] for f in clean), 0.5)  # one draw, as the release
    for c, p in zip(clean, perturbed):
        expected = c * mask[:, :c.shape[1], None, None]
        assert torch.allclose(p, expected, atol=1e-6)
    assert not torch.allclose(perturbed[0], clean[0])


def test_shared_mask_over_levels_of_different_widths():
    torch.manual_seed(0)
    mask = complementary_masks(3, 8, keep_ratio=0.5)
    wide, narrow = torch.ones(6, 8, 2, 2), torch.ones(6, 4, 3, 3)
    out_wide, out_narrow = apply_shared_channel_mask([wide, narrow], mask)
    assert torch.equal(out_wide[:, :, 0, 0], mask)
    assert torch.equal(out_narrow[:, :, 1, 2], mask[:, :4])
    assert torch.equal(out_narrow[:3] + out_narrow[3:], 2 * torch.ones(3, 4, 3, 3))  # still complementary
    with pytest.raises(ValueError, match='widest'):
        apply_shared_channel_mask([torch.ones(6, 9, 2, 2)], mask)


def test_teacher_shares_frozen_parameters_and_averages_the_rest(model):
    from semiseg.methods.base import StepContext
    method = build_method(v2_cfg(), model)
    student, teacher = unwrap(model), method.teacher
    s_params, t_params = dict(student.named_parameters()), dict(teacher.named_parameters())
    assert list(s_params) == list(t_params)
    frozen = [n for n, p in s_params.items() if not p.requires_grad]
    guidance = [n for n in frozen if n.startswith('clip_encoder.')]
    assert guidance and len(guidance) == sum(1 for n in s_params if n.startswith('clip_encoder.'))
    assert all(t_params[n] is s_params[n] for n in frozen)  # no copy of the guidance encoder
    trainable = [n for n in s_params if n not in frozen]
    assert trainable and all(t_params[n] is not s_params[n] for n in trainable)
    assert teacher.clip_encoder is not student.clip_encoder  # own modules: the teacher's eval mode is its own
    model.train()
    assert not teacher.training and not teacher.decode_head.training

    frozen_before = {n: s_params[n].detach().clone() for n in frozen}
    with torch.no_grad():
        for n in trainable:
            s_params[n].add_(1.0)
    before = {n: t_params[n].detach().clone() for n in trainable}
    method.after_step(StepContext(iteration=1000, total_iters=2000, epoch=0, want_visuals=False))
    lam = method.ema_decay
    for n in trainable:
        expected = lam * before[n] + (1 - lam) * s_params[n].detach()
        assert torch.allclose(t_params[n], expected, atol=1e-6), n
    assert all(torch.equal(s_params[n], frozen_before[n]) for n in frozen)  # untouched, bit for bit
