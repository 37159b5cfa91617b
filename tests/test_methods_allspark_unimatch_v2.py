"""The AllSpark and UniMatch V2 training steps on their tiny models, and the V2 teacher across resume."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from semiseg.api import build_model, run_config
from semiseg.engine.optim import build_optimizer
from semiseg.methods import build_method
from semiseg.methods.base import StepContext
from semiseg.methods.unimatch_v2 import in_batch_cutmix
from semiseg.models.perturb import complementary_masks

torch.set_num_threads(1)
B, S = 2, 64


def toy_batch(nclass: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.randn(B, 3, S, S, generator=g)  # noqa: E731
    ignore = torch.zeros(B, S, S, dtype=torch.long)
    ignore[:, -8:] = 255                         # padded bottom rows of the unlabeled crops
    box1 = torch.zeros(B, S, S)
    box1[0, 8:40, 8:40] = 1
    box2 = torch.zeros(B, S, S)
    box2[1, 20:50, 0:30] = 1
    return {'img_x': img(), 'img_x_s': img(), 'mask_x': torch.randint(0, nclass, (B, S, S), generator=g),
            'img_w': img(), 'img_s1': img(), 'img_s2': img(), 'ignore': ignore, 'box1': box1, 'box2': box2}


# ------------------------------------------------------------------------------------------- AllSpark
@pytest.fixture(scope='module')
def allspark_cfg():
    return run_config(0, 5)


def test_allspark_step_trains_both_halves_and_ignores_padding(allspark_cfg):
    torch.manual_seed(0)
    model = build_model(0, 5, pretrained=False)
    method = build_method(allspark_cfg, model)
    seen = []
    method.criterion_u = lambda pred, target: (seen.append(target) or F.cross_entropy(pred, target, ignore_index=255))
    batch = toy_batch()
    result = method.step(batch, StepContext(iteration=0, total_iters=10, epoch=0))
    assert set(result.losses) == {'loss_x', 'loss_u'} and result.weights == {'loss_x': 0.5, 'loss_u': 0.5}
    assert (seen[0][batch['ignore'] == 255] == 255).all() and (seen[0][batch['ignore'] == 0] != 255).all()
    assert not method.head.memory_in_use                      # epoch 0 < warmup_epoch 1
    result.total().backward()
    assert all(p.grad is not None for p in model.decode_head.allspark.parameters() if p.requires_grad)

    release = build_method({**allspark_cfg, 'ignore_unlabeled_padding': False}, model)
    release.criterion_u = lambda pred, target: (seen.append(target) or F.cross_entropy(pred, target))
    release.step(batch, StepContext(iteration=0, total_iters=10, epoch=1))
    assert not (seen[-1] == 255).any()                        # the release trains the padding too
    assert release.head.memory_in_use                         # epoch 1 >= warmup_epoch 1


def test_allspark_pseudo_labels_come_from_an_eval_pass_on_the_weak_view(allspark_cfg):
    torch.manual_seed(0)
    model = build_model(0, 5, pretrained=False)
    calls = []
    model.register_forward_pre_hook(lambda m, args: calls.append((m.training, args[0].shape[0])))
    build_method(allspark_cfg, model).step(toy_batch(), StepContext(0, 10, 0))
    assert calls == [(False, B), (True, 2 * B)]


def test_allspark_release_coco_config_without_warmup_epoch_is_refused(allspark_cfg):
    with pytest.raises(ValueError, match="warmup_epoch is None, as in the AllSpark release's coco config"):
        build_method({**allspark_cfg, 'warmup_epoch': None}, build_model(0, 5, pretrained=False))
    with pytest.raises(ValueError, match='needs the AllSpark decoder'):
        build_method(allspark_cfg, build_model(0, 4, pretrained=False))


# --------------------------------------------------------------------------------------- UniMatch V2
@pytest.fixture(scope='module')
def v2_cfg():
    return run_config(0, 6)


def test_in_batch_cutmix_takes_the_reversed_batch():
    x = torch.arange(3.0)[:, None, None].expand(3, 2, 2).clone()
    box = torch.zeros(3, 2, 2)
    box[:, 0, 0] = 1
    out = in_batch_cutmix(x, box)
    assert out[:, 0, 0].tolist() == [2.0, 1.0, 0.0] and out[:, 1, 1].tolist() == [0.0, 1.0, 2.0]


def test_complementary_masks_partition_the_channels():
    torch.manual_seed(3)
    mask = complementary_masks(pairs=4, channels=16)
    m1, m2 = mask[:4], mask[4:]
    assert set(mask.unique().tolist()) <= {0.0, 1.0, 2.0}
    assert torch.equal(m1 + m2, torch.full_like(m1, 2.0))       # complementary: each channel in one view
    kept = (m1 == 1).all(1)
    assert int(kept.sum()) == 2 and torch.equal(m1[kept], m2[kept])  # half the pairs unperturbed
    assert ((m1[~kept] == 0) | (m1[~kept] == 2)).all()          # the others: dropped or doubled


def test_unimatch_v2_step_losses_on_small_tensors(v2_cfg):
    """L = (L_x + (L_s1 + L_s2) / 2) / 2, L_sk = sum(CE [conf >= tau] valid) / #valid, labels from the
    teacher on the weak view, CutMixed with the reversed batch; the strong views use comp_drop."""
    torch.manual_seed(0)
    model = build_model(0, 6, pretrained=False)
    method = build_method({**v2_cfg, 'conf_thresh': 0.3}, model)
    batch = toy_batch()
    comp_drop_calls = []
    original_forward = model.forward
    model.forward = lambda x, **kw: (comp_drop_calls.append(kw.get('comp_drop', False)) or original_forward(x, **kw))
    torch.manual_seed(5)
    result = method.step(batch, StepContext(0, 10, 0))
    assert result.weights == {'loss_x': 0.5, 'loss_s1': 0.25, 'loss_s2': 0.25}
    assert comp_drop_calls == [False, True]

    model.forward = original_forward
    with torch.no_grad():
        conf, mask = method.teacher(batch['img_w']).softmax(1).max(1)
        torch.manual_seed(5)
        pred_x = model(batch['img_x'])
        s = torch.cat([in_batch_cutmix(batch['img_s1'], batch['box1']),
                       in_batch_cutmix(batch['img_s2'], batch['box2'])])
        pred_s1, pred_s2 = model(s, comp_drop=True).chunk(2)
    assert torch.allclose(result.losses['loss_x'], F.cross_entropy(pred_x, batch['mask_x'], ignore_index=255))
    for k, pred in (('1', pred_s1), ('2', pred_s2)):
        box = batch[f'box{k}']
        target, c, ign = (in_batch_cutmix(t, box) for t in (mask, conf, batch['ignore']))
        ce = F.cross_entropy(pred, target, reduction='none')
        expected = (ce * ((c >= 0.3) & (ign != 255))).sum() / (ign != 255).sum()
        assert torch.allclose(result.losses[f'loss_s{k}'], expected, atol=1e-6)
    valid = batch['ignore'] != 255
    assert torch.isclose(result.stats['mask_ratio'], ((conf >= 0.3) & valid).sum() / valid.sum())


def test_ema_update_follows_the_release_schedule(v2_cfg):
    torch.manual_seed(0)
    model = build_model(0, 6, pretrained=False)
    method = build_method(v2_cfg, model)
    student = dict(model.named_parameters())
    first = next(iter(student))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    method.after_step(StepContext(iteration=0))                 # lam = 0: a copy of the student
    assert torch.equal(dict(method.teacher.named_parameters())[first], student[first])
    before = dict(method.teacher.named_parameters())[first].clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(2.0)
    method.after_step(StepContext(iteration=1))                 # lam = 0.5
    assert torch.allclose(dict(method.teacher.named_parameters())[first], 0.5 * before + 0.5 * student[first])
    assert min(1 - 1 / (1000 + 1), method.ema_decay) == 0.996  # the cap from iteration 249 on


def test_unimatch_v2_layerwise_learning_rates():
    cfg = run_config(60, 5)                                      # DINOv2-B, VOC 92
    assert cfg['model'] == 'mmseg.dpt-dinov2b' and cfg['optimizer']['lr'] == 5e-6
    torch.manual_seed(0)
    model = build_model(0, 6, pretrained=False)
    opt = build_optimizer(model, {**cfg, 'model': 'mmseg.dpt-dinov2-tiny'})
    lrs = {}
    for group in opt.param_groups:
        for p in group['params']:
            lrs[p] = (group['lr'], group['weight_decay'])
    for name, p in model.named_parameters():
        want = 5e-6 if name.startswith('backbone.') else 5e-6 * 40
        assert lrs[p] == (pytest.approx(want), 0.01), name


def test_teacher_state_is_saved_and_restored_exactly_on_resume(tmp_path):
    """A run stopped mid-epoch and resumed ends with the same student and EMA teacher as an
    uninterrupted one (the teacher travels in latest.pth)."""
    import sys
    sys.path.insert(0, str(__import__('pathlib').Path(__file__).parent))
    from _toy_data import trimmed_toy

    from semiseg.engine import TrainingInterrupted, train
    from semiseg.engine.checkpoint import read_training_checkpoint
    from semiseg.engine.signals import request_stop
    from semiseg.engine.trainer import TrainerParts
    from semiseg.methods import build_method as real_build

    data = trimmed_toy(tmp_path / 'data', unlabeled=16, val=2)
    cfg = run_config(0, 6, data_root=str(data / 'toy') + '/', epochs=2, eval_every_n_epochs=1)
    cfg.update(debug_every_epoch=False, log_every=1)

    def stopping_method(stop_at):
        def build(cfg, model):
            method = real_build(cfg, model)
            step = method.step

            def step_and_maybe_stop(batch, ctx):
                if ctx.iteration == stop_at:
                    request_stop('test stop')
                return step(batch, ctx)
            method.step = step_and_maybe_stop
            return method
        return build

    train(copy.deepcopy(cfg), tmp_path / 'ref')
    with pytest.raises(TrainingInterrupted):
        train(copy.deepcopy(cfg), tmp_path / 'resumed', TrainerParts(build_method=stopping_method(5)))
    assert read_training_checkpoint(tmp_path / 'resumed' / 'latest.pth')['iteration'] == 6
    train(copy.deepcopy(cfg), tmp_path / 'resumed')
    ref = read_training_checkpoint(tmp_path / 'ref' / 'latest.pth')
    got = read_training_checkpoint(tmp_path / 'resumed' / 'latest.pth')
    for key in ('model',):
        for name, value in ref[key].items():
            assert torch.equal(got[key][name], value), name
    for name, value in ref['method']['teacher'].items():
        assert torch.equal(got['method']['teacher'][name], value), name
    assert got['extra_evals']['ema']['miou'] == ref['extra_evals']['ema']['miou']
    # --results reads the teacher by V2's rule: results.json has it under 'ema', and so has state.json
    from semiseg.launch.results import folder_numbers
    from semiseg.launch.status import FolderFiles
    files = FolderFiles.read(tmp_path / 'ref')
    assert files.state['ema'] == {k: files.results['ema'][k] for k in ('miou', 'best_miou')}
    assert folder_numbers(files)['ema_best'] == files.results['ema']['best_miou'] > 0


def test_experiment_65_trains_one_iteration_at_a_small_crop():
    """SemiVL's model (CLIP ViT-B/16 + VLG + MaskCLIP guidance) under UniMatch V2's method."""
    cfg = run_config(65, 0, crop_size=64, batch_size=1)
    assert cfg['method'] == 'unimatch_v2' and cfg['clip_encoder'] == 'mcvit16' and cfg['mcc_text'] == 'concept4_single'
    torch.manual_seed(0)
    model = build_model(65, 0, pretrained=False, crop_size=64, text_embedding=torch.randn(21, 512),
                        mcc_text_embedding=torch.randn(98, 512))
    method = build_method(cfg, model)
    batch = toy_batch(nclass=21)
    result = method.step(batch, StepContext(0, 100, 0))
    assert {'loss_mc_s1', 'loss_mc_s2'} <= set(result.losses) and result.weights['loss_mc_s1'] == pytest.approx(0.05)
    result.total().backward()
    method.after_step(StepContext(0, 100, 0))
    assert torch.isfinite(result.total())


def test_the_ema_teacher_loads_for_evaluation(tmp_path):
    """`weights='ema'` (eval / predict --weights ema) takes our method.teacher or the release's model_ema."""
    from semiseg.api import load_checkpoint
    from semiseg.utils.checkpoint_io import CheckpointError
    torch.manual_seed(0)
    student, teacher = build_model(0, 6, pretrained=False), build_model(0, 6, pretrained=False)
    ours = tmp_path / 'latest.pth'
    torch.save({'model': student.state_dict(), 'iteration': 5, 'method': {'teacher': teacher.state_dict()}}, ours)
    release = tmp_path / 'release.pth'
    torch.save({'model': {f'module.{k}': v for k, v in student.state_dict().items()},
                'model_ema': {f'module.{k}': v for k, v in teacher.state_dict().items()}}, release)
    first = next(iter(teacher.state_dict()))
    for path in (ours, release):
        model = build_model(0, 6, pretrained=False)
        load_checkpoint(model, path, weights='ema')
        assert torch.equal(model.state_dict()[first], teacher.state_dict()[first])
        load_checkpoint(model, path)
        assert torch.equal(model.state_dict()[first], student.state_dict()[first])
    plain = tmp_path / 'plain.pth'
    torch.save({'model': student.state_dict()}, plain)
    with pytest.raises(CheckpointError, match='holds no EMA teacher'):
        load_checkpoint(build_model(0, 6, pretrained=False), plain, weights='ema')


def test_allspark_debug_panel_uses_its_own_layout(allspark_cfg):
    """AllSpark declares its panel (labeled and unlabeled columns): no visual sits in another method's FP slot."""
    from semiseg.engine.debug_panels import grid_for
    torch.manual_seed(0)
    method = build_method(allspark_cfg, build_model(0, 5, pretrained=False))
    result = method.step(toy_batch(), StepContext(0, 10, 0, want_visuals=True, max_visuals=1))
    assert set(result.visuals) == {k for row in method.visual_layout for k in row}
    grid = grid_for(result.visuals, method.visual_layout)
    assert [[c[1] for c in row] for row in grid] == [['Image L', 'Image U'], ['Pred L', 'Pred U'], ['GT L', 'PL U']]
