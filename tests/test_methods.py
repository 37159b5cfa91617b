"""Training steps on a tiny stand-in model that honours the model contract (docs/ARCHITECTURE.md §4)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semiseg.methods import VISUAL_LAYOUT, StepContext, StepResult, build_method
from semiseg.utils.modules import unwrap

NCLASS, B, S = 3, 2, 8


class StandIn(nn.Module):
    """1x1 conv 'backbone' + 1x1 conv 'head'; need_fp applies dropout2d to the features; the
    guidance labels are a fixed function of the image (softmax of 5 * its first channels)."""

    def __init__(self, guidance: bool = True):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 1)
        self.decode_head = nn.Conv2d(8, NCLASS, 1)
        self.has_guidance = guidance
        self.num_classes = NCLASS
        self.calls = []  # (training, batch size, need_fp) of every forward

    def forward(self, x, need_fp=False):
        self.calls.append((self.training, x.shape[0], need_fp))
        f = torch.relu(self.backbone(x))
        if need_fp:
            out = self.decode_head(torch.cat((f, F.dropout2d(f, 0.5, training=True))))
            return out.chunk(2)
        return self.decode_head(f)

    @torch.no_grad()
    def guidance_labels(self, x, conf_thresh):
        conf, label = (5 * x[:, :NCLASS]).softmax(1).max(1)
        return label.masked_fill(conf < conf_thresh, 255)


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.randn(B, 3, S, S, generator=g)  # noqa: E731
    ignore = torch.zeros(B, S, S, dtype=torch.long)
    ignore[:, -2:, :] = 255          # bottom rows padded
    ignore_o = torch.zeros(B, S, S, dtype=torch.long)
    ignore_o[:, :, -3:] = 255
    box1 = torch.zeros(B, S, S)
    box1[:, 1:5, 2:6] = 1
    box2 = torch.zeros(B, S, S)
    box2[0, 4:, :4] = 1
    mask_x = torch.randint(0, NCLASS, (B, S, S), generator=g)
    mask_x[:, 0, 0] = 255
    return {'img_x': img(), 'mask_x': mask_x, 'img_w': img(), 'img_s1': img(), 'img_s2': img(),
            'ignore': ignore, 'box1': box1, 'box2': box2, 'img_w_o': img(), 'img_s1_o': img(),
            'img_s2_o': img(), 'ignore_o': ignore_o}


def cfg_for(method, **kw):
    cfg = {'method': method, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
           'criterion_u': 'CELoss', 'conf_thresh': 0.5, 'conf_mode': 'pixelwise', 'use_fp': True,
           'pleval': True, 'maskclip_consistency_lambda': 0, 'mcc_conf_thresh': 0.6,
           'mcc_loss_reduce': 'mean_all'}
    cfg.update(kw)
    return cfg


def run_step(cfg, seed=0, ctx=None, model=None):
    torch.manual_seed(seed)
    model = model or StandIn()
    torch.manual_seed(seed + 1)
    method = build_method(cfg, model)
    result = method.step(make_batch(), ctx or StepContext(iteration=10, total_iters=40))
    return model, method, result


def release_semivl_loss(model, batch, cfg, iteration, total_iters):
    """The release's iteration maths (google-research/semivl `semivl.py`, the training loop),
    written out in its in-place style."""
    b = {k: v.clone() for k, v in batch.items()}
    tau, lam = cfg['conf_thresh'], cfg['maskclip_consistency_lambda']
    b['img_s1'][b['box1'].unsqueeze(1).expand(b['img_s1'].shape) == 1] = \
        b['img_s1_o'][b['box1'].unsqueeze(1).expand(b['img_s1'].shape) == 1]
    b['img_s2'][b['box2'].unsqueeze(1).expand(b['img_s2'].shape) == 1] = \
        b['img_s2_o'][b['box2'].unsqueeze(1).expand(b['img_s2'].shape) == 1]
    with torch.no_grad():
        model.eval()
        conf_o, mask_o = model(b['img_w_o']).softmax(1).max(1)
        mclip, mclip_o = model.guidance_labels(torch.cat((b['img_w'], b['img_w_o'])),
                                               cfg['mcc_conf_thresh']).chunk(2)
        mclip[b['ignore'] == 255] = 255
        mclip_o[b['ignore_o'] == 255] = 255
    model.train()
    preds, preds_fp = model(torch.cat((b['img_x'], b['img_w'])), need_fp=True)
    pred_x, pred_w = preds.chunk(2)
    pred_w_fp = preds_fp.chunk(2)[1]
    pred_s1, pred_s2 = model(torch.cat((b['img_s1'], b['img_s2']))).chunk(2)
    conf_w, mask_w = pred_w.detach().softmax(1).max(1)

    def mix(a, a_o, box):
        out = a.clone()
        out[box == 1] = a_o[box == 1]
        return out

    def cwl(pred, mask, conf, ign):
        loss = F.cross_entropy(pred, mask, reduction='none')
        loss = loss * ((conf >= tau) & (ign != 255))
        return loss.sum() / (ign != 255).sum()

    def mc(pred, target):
        loss = F.cross_entropy(pred, target, ignore_index=255, reduction='none')
        return loss.sum() / target.numel()

    l_x = F.cross_entropy(pred_x, b['mask_x'], ignore_index=255)
    terms = []
    for box, pred_s in ((b['box1'], pred_s1), (b['box2'], pred_s2)):
        terms.append(cwl(pred_s, mix(mask_w, mask_o, box), mix(conf_w, conf_o, box),
                         mix(b['ignore'], b['ignore_o'], box)))
        terms.append(mc(pred_s, mix(mclip, mclip_o, box)))
    l_fp = cwl(pred_w_fp, mask_w, conf_w, b['ignore'])
    m_fp = mc(pred_w_fp, mclip)
    p = iteration / total_iters
    lam_t = lam[0] * (1 - p) + lam[1] * p
    return ((l_x + 0.25 * terms[0] + 0.25 * terms[2] + 0.5 * l_fp) / 2
            + lam_t * (0.25 * terms[1] + 0.25 * terms[3] + 0.5 * m_fp))


def test_build_method_unknown_lists_valid():
    with pytest.raises(ValueError, match='supervised, fixmatch, unimatch, semivl'):
        build_method({'method': 'magic'}, StandIn())


STANDIN_METHODS = ('supervised', 'fixmatch', 'unimatch', 'semivl')   # the others need their own decoders:
                                                                      # tests/test_methods_allspark_unimatch_v2.py


@pytest.mark.parametrize('name', STANDIN_METHODS)
def test_step_losses_finite_and_backprop(name):
    model, method, result = run_step(cfg_for(name))
    assert isinstance(result, StepResult)
    assert set(result.losses) == set(result.weights)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in result.losses.values())
    result.total().backward()
    for p in model.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert method.info.uses_unlabeled == (name != 'supervised')
    assert method.info.uses_partner == (name != 'supervised')


def test_weights_of_each_method():
    assert run_step(cfg_for('supervised'))[2].weights == {'loss_x': 1.0}
    assert run_step(cfg_for('fixmatch'))[2].weights == {'loss_x': 0.5, 'loss_s': 0.5}
    w = run_step(cfg_for('unimatch'))[2].weights
    assert w == {'loss_x': 0.5, 'loss_s1': 0.125, 'loss_s2': 0.125, 'loss_fp': 0.25}
    assert sum(w.values()) == pytest.approx(1.0)
    w = run_step(cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0]),
                 ctx=StepContext(iteration=10, total_iters=40))[2].weights
    lam = 0.1 * (1 - 10 / 40)
    assert w['loss_mc_s1'] == pytest.approx(0.25 * lam)
    assert w['loss_mc_fp'] == pytest.approx(0.5 * lam)
    assert sum(v for k, v in w.items() if 'mc' in k) == pytest.approx(lam)  # not halved
    assert sum(v for k, v in w.items() if 'mc' not in k) == pytest.approx(1.0)


def test_semivl_total_matches_release_formula():
    cfg = cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0])
    torch.manual_seed(0)
    model = StandIn()
    ref_model = StandIn()
    ref_model.load_state_dict(model.state_dict())
    torch.manual_seed(5)
    result = build_method(cfg, model).step(make_batch(), StepContext(10, 40))
    torch.manual_seed(5)
    ref = release_semivl_loss(ref_model, make_batch(), cfg, 10, 40)
    assert result.total().item() == pytest.approx(ref.item(), rel=1e-5)
    assert 0 < result.stats['mcc_coverage'] <= 1 and 0 <= result.stats['mask_ratio'] <= 1


def test_semivl_without_lambda_is_unimatch():
    a = run_step(cfg_for('semivl'), seed=3)[2]
    b = run_step(cfg_for('unimatch'), seed=3)[2]
    assert a.weights == b.weights
    for k in a.losses:
        assert a.losses[k].item() == pytest.approx(b.losses[k].item())


def test_partner_eval_mode_and_forward_order():
    model, _, _ = run_step(cfg_for('unimatch'))
    assert model.calls == [(False, B, False), (True, 2 * B, True), (True, 2 * B, False)]
    assert model.training


def test_mmseg_criterion_u_differs_from_the_pixelwise_ce():
    a = run_step(cfg_for('unimatch', criterion_u='mmseg', conf_thresh=0.4), seed=2)[2]
    b = run_step(cfg_for('unimatch', conf_thresh=0.4), seed=2)[2]
    for k in ('loss_s1', 'loss_s2', 'loss_fp'):
        assert b.losses[k].item() > 0
        assert a.losses[k].item() != pytest.approx(b.losses[k].item(), rel=1e-3)


@pytest.mark.parametrize('mode', ['pixelratio', 'pixelavg'])
def test_conf_modes_run(mode):
    result = run_step(cfg_for('semivl', conf_mode=mode))[2]
    assert torch.isfinite(result.total())


def test_mask_ratio_counts_confident_valid_pixels():
    _, _, r = run_step(cfg_for('unimatch', conf_thresh=0.0))
    assert r.stats['mask_ratio'].item() == pytest.approx(1.0)
    _, _, r = run_step(cfg_for('unimatch', conf_thresh=1.01))
    assert r.stats['mask_ratio'].item() == 0.0
    assert r.losses['loss_s1'].item() == 0.0


def test_visuals_layout_cutmix_and_cpu():
    cfg = cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0])
    _, _, r = run_step(cfg, ctx=StepContext(0, 40, want_visuals=True, max_visuals=1))
    expected = {k for row in VISUAL_LAYOUT for k in row if k}
    assert set(r.visuals) == expected
    batch = make_batch()
    inside = batch['box1'][0] == 1
    assert torch.equal(r.visuals['img_s1'][0][:, inside], batch['img_s1_o'][0][:, inside])
    assert torch.equal(r.visuals['img_s1'][0][:, ~inside], batch['img_s1'][0][:, ~inside])
    for v in r.visuals.values():
        assert v.shape[0] == 1 and v.device.type == 'cpu' and not v.requires_grad
    assert (r.visuals['mcc_fp'][0][-2:] == 255).all()  # padded rows of the weak view
    assert run_step(cfg)[2].visuals == {}


def test_config_errors():
    with pytest.raises(ValueError, match='has no MaskCLIP'):
        build_method(cfg_for('semivl', maskclip_consistency_lambda=0.1), StandIn(guidance=False))
    with pytest.raises(ValueError, match='use_fp'):
        build_method(cfg_for('unimatch', use_fp=False), StandIn())
    with pytest.raises(ValueError, match='pleval'):
        build_method(cfg_for('semivl', pleval=False), StandIn())
    with pytest.raises(ValueError, match='conf_mode'):
        build_method(cfg_for('semivl', conf_mode='pixel'), StandIn())
    with pytest.raises(ValueError, match='criterion_u'):
        build_method(cfg_for('semivl', criterion_u='OHEM'), StandIn())
    method = build_method(cfg_for('unimatch'), StandIn())
    with pytest.raises(KeyError, match='img_w_o'):
        method.step({k: v for k, v in make_batch().items() if k != 'img_w_o'}, StepContext())


def test_unwrap_and_wrapped_model():
    model = StandIn()
    wrapped = nn.DataParallel(model)
    assert unwrap(wrapped) is model
    cfg = cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0])
    result = build_method(cfg, wrapped).step(make_batch(), StepContext(0, 10))
    assert 'loss_mc_fp' in result.losses


def test_bf16_autocast_step_is_finite():
    cfg = cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0])
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        result = run_step(cfg)[2]
    assert all(torch.isfinite(v.float()) for v in result.losses.values())
    assert torch.isfinite(result.total().float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_step_on_cuda():
    model = StandIn().to('cuda')
    batch = {k: v.to('cuda') for k, v in make_batch().items()}
    cfg = cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0])
    result = build_method(cfg, model).step(batch, StepContext(0, 10, want_visuals=True))
    result.total().backward()
    assert all(v.device.type == 'cuda' for v in result.losses.values())
    assert all(v.device.type == 'cpu' for v in result.visuals.values())


class ConstantHeadLoss(nn.Module):
    """A head loss_decode stand-in: 1 (with grad) whatever the labels; records the labels."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def forward(self, pred, label):
        self.labels.append(label)
        return pred.sum() * 0 + 1.0


def test_mmseg_criterion_uses_the_head_loss():
    model = StandIn()
    model.decode_head.loss_decode = ConstantHeadLoss()
    cfg = cfg_for('unimatch', criterion={'name': 'mmseg', 'kwargs': {'ignore_index': 255}},
                  criterion_u='mmseg')
    torch.manual_seed(0)
    r = build_method(cfg, model).step(make_batch(), StepContext(0, 10))
    assert r.losses['loss_x'].item() == 1.0
    # unsupervised terms: head loss x fraction of confident valid pixels
    assert r.losses['loss_fp'].item() == pytest.approx(r.stats['mask_ratio'].item())
    fp_label = model.decode_head.loss_decode.labels[-1]
    assert not (fp_label == 255).any()      # the release passes the unmasked argmax labels
    # CELoss configs never use it
    sup = build_method(cfg_for('supervised'), model)
    assert not isinstance(sup.criterion_l, ConstantHeadLoss)


def _ddp_worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)  # a forked child cannot reuse the parent's OpenMP pool
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(StandIn(), find_unused_parameters=True,
                                                    broadcast_buffers=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        method = build_method(cfg_for('semivl', maskclip_consistency_lambda=[0.1, 0]), model)
        for it in range(2):
            torch.manual_seed(rank * 10 + it)
            result = method.step(make_batch(seed=rank * 10 + it), StepContext(it, 2))
            opt.zero_grad()
            result.total().backward()
            opt.step()
        torch.save({k: v.detach() for k, v in model.module.state_dict().items()},
                   f'{out_file}.{rank}')
    finally:
        dist.destroy_process_group()


def test_semivl_step_under_ddp_keeps_ranks_in_sync(tmp_path):
    import torch.multiprocessing as mp
    out = str(tmp_path / 'w')
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / 'init'), out), nprocs=2,
                       start_method='fork')
    w0, w1 = torch.load(f'{out}.0', weights_only=True), torch.load(f'{out}.1', weights_only=True)
    for k in w0:
        assert torch.allclose(w0[k], w1[k]), k
