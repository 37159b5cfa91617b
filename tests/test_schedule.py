"""The release's poly LR with warmup and its one-step lag (google-research/semivl `semivl.py`,
the LR update after `optimizer.step()`)."""
import pytest
import torch
from mmengine.optim import PolyLR

from semiseg.engine.schedule import PolyLRSchedule, build_scheduler


def make_opt(lr=1.0):
    p = torch.nn.Parameter(torch.zeros(1))
    q = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{'params': [p], 'lr': lr}, {'params': [q], 'lr': 10 * lr}], lr=lr)
    for g in opt.param_groups:
        g['initial_lr'] = g['lr']
    return opt


def lrs_used(schedule, opt, n):
    """LR of group 0 used by optimizer steps 0..n-1 (schedule.step after each step)."""
    used = []
    for it in range(n):
        used.append(opt.param_groups[0]['lr'])
        schedule.step(it)
    return used


def test_poly_values_and_lag():
    T = 100
    opt = make_opt()
    s = PolyLRSchedule(opt, T)
    used = lrs_used(s, opt, T)
    assert used[0] == 1.0 and used[1] == 1.0                 # steps 0 and 1 at the base lr
    assert used[2] == pytest.approx((1 - 1 / T) ** 0.9)
    assert used[T // 2] == pytest.approx((1 - (T // 2 - 1) / T) ** 0.9)
    assert used[T - 1] == pytest.approx((2 / T) ** 0.9)
    assert opt.param_groups[1]['lr'] == pytest.approx(10 * (1 / T) ** 0.9)  # per-group initial_lr


def test_one_step_behind_mmengine_polylr():
    T = 20
    opt = make_opt()
    ours = lrs_used(PolyLRSchedule(opt, T), opt, T)
    ref_opt = make_opt()
    # mmengine decays over end - begin - 1 steps: end = T + 1 gives lr_t = (1 - t/T)^0.9
    ref = PolyLR(ref_opt, power=0.9, eta_min=0, begin=0, end=T + 1, by_epoch=False)
    theirs = []
    for _ in range(T):
        theirs.append(ref_opt.param_groups[0]['lr'])
        ref_opt.step()
        ref.step()
    assert ours[1:] == pytest.approx(theirs[:-1])


def test_warmup():
    opt = make_opt()
    s = PolyLRSchedule(opt, 100, warmup_iters=10, warmup_ratio=1e-6)
    used = lrs_used(s, opt, 12)
    assert used[0] == 1.0                                   # before any schedule step
    assert used[1] == pytest.approx(1e-6)                   # after step(0): ratio
    assert used[6] == pytest.approx(1 - 0.5 * (1 - 1e-6))   # after step(5)
    assert used[11] == pytest.approx(0.9 ** 0.9)            # after step(10): poly


def test_state_dict_resume():
    opt = make_opt()
    s = PolyLRSchedule(opt, 50)
    lrs_used(s, opt, 30)
    state = s.state_dict()
    opt2 = make_opt()
    s2 = PolyLRSchedule(opt2, 1)
    s2.load_state_dict(state)
    assert s2.max_iters == 50 and s2.last_iter == 29
    assert [g['lr'] for g in opt2.param_groups] == pytest.approx(s.get_last_lr())


def test_build_scheduler_max_iters():
    opt = make_opt()
    s = build_scheduler(opt, {'warmup_iters': 0, 'warmup_ratio': 1e-6}, 200)
    assert s.max_iters == 200
    s = build_scheduler(opt, {'scheduler_max_iters': 300}, 200)
    assert s.max_iters == 300
    with pytest.raises(ValueError, match='scheduler_max_iters'):
        build_scheduler(opt, {'scheduler_max_iters': 100}, 200)
