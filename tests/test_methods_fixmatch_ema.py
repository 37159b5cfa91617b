"""UniMatch V2's FixMatch-with-EMA baseline (LiheYoung/UniMatch-V2 `fixmatch.py`) on the tiny DINOv2 + DPT
model: the loss against a hand computation, one student forward, the registry's views, exp 64's configs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semiseg.api import build_model, run_config
from semiseg.data.build import build_datasets
from semiseg.engine.step import train_step
from semiseg.methods import build_method, method_info
from semiseg.methods.base import StepContext
from semiseg.methods.unimatch_v2 import in_batch_cutmix

torch.set_num_threads(1)
B, S = 2, 64


def toy_batch(nclass: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ignore = torch.zeros(B, S, S, dtype=torch.long)
    ignore[:, -8:] = 255
    box1 = torch.zeros(B, S, S)
    box1[0, 8:40, 8:40] = 1
    return {'img_x': torch.randn(B, 3, S, S, generator=g), 'mask_x': torch.randint(0, nclass, (B, S, S), generator=g),
            'img_w': torch.randn(B, 3, S, S, generator=g), 'img_s1': torch.randn(B, 3, S, S, generator=g),
            'ignore': ignore, 'box1': box1}


@pytest.fixture(scope='module')
def cfg():
    return {**run_config(0, 6), 'method': 'fixmatch_ema', 'conf_thresh': 0.3}


def test_the_registry_asks_for_one_strong_view_and_keeps_a_teacher():
    info = method_info('fixmatch_ema')
    assert info.batch_keys == ('img_x', 'mask_x', 'img_w', 'img_s1', 'ignore', 'box1')
    assert info.teacher and not info.uses_partner


def test_step_loss_is_the_release_fixmatch_with_the_ema_teacher(cfg):
    """L = (L_x + L_s) / 2 from one forward on cat(x_l, x_s1) (no comp_drop); L_s = sum(CE [conf >= tau]
    valid) / #valid with the teacher's labels of the weak view, CutMixed with the reversed batch."""
    torch.manual_seed(0)
    model = build_model(0, 6, pretrained=False)
    method = build_method(cfg, model)
    with torch.no_grad():                                    # a teacher unlike the student
        for p in method.teacher.parameters():
            p.mul_(0.9)
    calls = []
    original = model.forward
    model.forward = lambda x, **kw: (calls.append((x.shape[0], kw)) or original(x, **kw))
    batch = toy_batch()
    torch.manual_seed(5)
    result = method.step(batch, StepContext(0, 10, 0))
    assert calls == [(2 * B, {})]                            # one student forward, no comp_drop
    assert result.weights == {'loss_x': 0.5, 'loss_s': 0.5}
    model.forward = original
    with torch.no_grad():
        conf, mask = method.teacher(batch['img_w']).softmax(1).max(1)
        torch.manual_seed(5)
        pred = model(torch.cat((batch['img_x'], in_batch_cutmix(batch['img_s1'], batch['box1']))))
    pred_x, pred_s = pred[:B], pred[B:]
    assert torch.allclose(result.losses['loss_x'], F.cross_entropy(pred_x, batch['mask_x'], ignore_index=255))
    target, c, ign = (in_batch_cutmix(t, batch['box1']) for t in (mask, conf, batch['ignore']))
    ce = F.cross_entropy(pred_s, target, reduction='none')
    expected = (ce * ((c >= 0.3) & (ign != 255))).sum() / (ign != 255).sum()
    assert torch.allclose(result.losses['loss_s'], expected, atol=1e-6)
    valid = batch['ignore'] != 255
    assert torch.isclose(result.stats['mask_ratio'], ((conf >= 0.3) & valid).sum() / valid.sum())


def test_train_step_updates_the_teacher_and_evaluates_it(cfg):
    from semiseg.engine.optim import build_optimizer
    torch.manual_seed(0)
    model = build_model(0, 6, pretrained=False)
    method = build_method(cfg, model)
    optimizer = build_optimizer(model, cfg)
    before = [t.clone() for t in method.teacher.parameters()]
    result, total = train_step(method, optimizer, None, toy_batch(), StepContext(1, 10, 0), 'fp32',
                               torch.device('cpu'))
    assert torch.isfinite(total) and set(result.losses) == {'loss_x', 'loss_s'}
    assert any(not torch.equal(a, b) for a, b in zip(before, method.teacher.parameters()))
    assert set(method.eval_models()) == {'ema'} and 'teacher' in method.state_dict()


def test_maskclip_consistency_is_refused(cfg):
    with pytest.raises(ValueError, match='fixmatch_ema has no MaskCLIP consistency'):
        build_method({**cfg, 'maskclip_consistency_lambda': 0.1}, build_model(0, 6, pretrained=False))


def test_toy_data_builds_exactly_its_views(cfg, tmp_path):
    from semiseg.data.toy import ensure_toy_dataset
    root = ensure_toy_dataset(tmp_path / 'toy')
    data = build_datasets({**cfg, 'data_root': str(root)}, method_info('fixmatch_ema'))
    assert set(data.unlabeled[0]) == {'img_w', 'img_s1', 'ignore', 'box1'} and data.partner is None


def test_exp_64_swaps_the_method_of_the_v2_dinov2_b_runs():
    for run, (exp, base) in enumerate([(60, 5), (61, 4), (62, 5), (63, 5)]):
        first = [0, 5, 9, 14][run]
        ours, v2 = run_config(64, first), run_config(exp, base)
        assert ours['method'] == 'fixmatch_ema' and ours['model'] == 'mmseg.dpt-dinov2b'
        differ = {k for k in set(ours) | set(v2) if ours.get(k) != v2.get(k)}
        assert differ <= {'method', 'name', 'exp', 'sweep', 'seed'}, differ
