"""Engine parts in isolation: iteration plan, resumable sampler, partner stream, debug panels,
checkpoint files and RNG capture, stop signals."""
from __future__ import annotations

import os
import random
import signal

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from semiseg.data.build import TrainData
from semiseg.engine import checkpoint as ckpt
from semiseg.engine import debug_panels, signals
from semiseg.engine.loaders import ResumableSampler, auto_workers, build_train_loaders, plan_iterations
from semiseg.utils.imaging import colorize


class _Ids(Dataset):
    """Item = {prefix+'id': index, ... random draws}: shows which id was loaded under which RNG state."""

    def __init__(self, n: int, prefix: str = 'x') -> None:
        self.n, self.prefix = n, prefix

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        p = self.prefix
        return {f'{p}_id': torch.tensor(i), f'{p}_py': torch.tensor(random.random()), f'{p}_torch': torch.rand(1),
                f'{p}_np': torch.tensor(np.random.rand())}


def _data(labeled, unlabeled=None, partner=None):
    return TrainData(labeled, unlabeled, partner, val=None)


def test_plan_iterations_follows_the_release():
    assert plan_iterations({'epochs': 4}, 48).total_iters == 192
    p = plan_iterations({'iters': 100, 'epochs': 80}, 48)
    assert (p.epochs, p.total_iters, p.scheduler_max_iters) == (3, 144, 144)
    assert plan_iterations({'epochs': 2, 'scheduler_max_iters': 500}, 10).scheduler_max_iters == 500
    with pytest.raises(ValueError, match='scheduler_max_iters=50 is smaller than the 96'):
        plan_iterations({'epochs': 2, 'scheduler_max_iters': 50}, 48)
    with pytest.raises(ValueError, match="needs 'epochs' or 'iters'"):
        plan_iterations({}, 48)


def test_resumable_sampler_skips_exactly_the_done_samples():
    ds = _Ids(23)
    full = ResumableSampler(ds, num_replicas=2, rank=1, seed=0)
    full.set_epoch(3)
    order = list(full)
    part = ResumableSampler(ds, num_replicas=2, rank=1, seed=0)
    part.set_epoch(3, skip=4)
    assert list(part) == order[4:] and len(part) == len(order) - 4
    part.set_epoch(4)
    assert len(list(part)) == 12      # padded to a multiple of the world size, skip reset
    other = ResumableSampler(ds, num_replicas=2, rank=1, seed=0)
    other.set_epoch(4)
    assert list(other) != order       # the order depends on the epoch


def test_partner_batch_has_the_same_ids_with_independent_augmentation():
    loaders = build_train_loaders(_data(_Ids(12), _Ids(12, 'u'), _Ids(12, 'u')), batch_size=4, seed=0,
                                  world_size=1, rank=0, num_workers=0, pin_memory=False)
    assert loaders.iters_per_epoch == 3
    batches = list(loaders.start_epoch(1))
    assert len(batches) == 3
    for b in batches:
        assert set(b) == {'x_id', 'x_py', 'x_torch', 'x_np', 'u_id', 'u_py', 'u_torch', 'u_np',
                          'u_id_o', 'u_py_o', 'u_torch_o', 'u_np_o'}
        assert torch.equal(b['u_id'], b['u_id_o'])                 # same image ids
        assert not torch.equal(b['u_py'], b['u_py_o'])             # python RNG differs
        assert not torch.equal(b['u_torch'], b['u_torch_o'])       # torch RNG differs
    again = list(loaders.start_epoch(1, skip_batches=1))
    assert len(again) == 2
    for b1, b2 in zip(batches[1:], again):   # a resumed epoch sees the same data
        assert all(torch.equal(b1[k], b2[k]) for k in b1)
    assert not torch.equal(list(loaders.start_epoch(2))[0]['u_id'], batches[0]['u_id'])


def test_persistent_workers_see_the_same_batches_as_in_process_loading():
    """Workers outlive the epoch and never see set_epoch: the sampler's (epoch, index) keys keep
    every epoch's augmentations (and a resumed epoch's) equal to in-process loading."""
    def epochs(workers):
        loaders = build_train_loaders(_data(_Ids(12), _Ids(12, 'u'), _Ids(12, 'u')), batch_size=4, seed=0,
                                      world_size=1, rank=0, num_workers=workers, pin_memory=False)
        assert loaders.loader_u.num_workers == workers and loaders.loader_u.persistent_workers == (workers > 0)
        return [list(loaders.start_epoch(e)) for e in (0, 1)] + [list(loaders.start_epoch(2, skip_batches=1))]

    ref, got = epochs(0), epochs(2)
    assert not torch.equal(ref[0][0]['u_py'], ref[1][0]['u_py'])
    for ref_epoch, got_epoch in zip(ref, got):
        assert len(ref_epoch) == len(got_epoch)
        for a, b in zip(ref_epoch, got_epoch):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_auto_workers_share_the_process_cpus_among_its_loaders(monkeypatch):
    assert auto_workers(3, loaders=3, cpus=64) == 3                      # a number is taken as given
    assert auto_workers('auto', loaders=3, cpus=2) == 1                  # never fewer than one
    assert auto_workers('auto', loaders=3, cpus=16) == 5                 # 15 CPUs left for 3 loaders
    assert auto_workers('auto', loaders=1, cpus=64) == 8                 # capped
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(32)), raising=False)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')                           # torchrun: 4 processes share 32
    monkeypatch.delenv('SLURM_CPUS_PER_TASK', raising=False)
    assert auto_workers('auto', loaders=1) == 7
    monkeypatch.setenv('SLURM_CPUS_PER_TASK', '6')                        # Slurm: the task's own CPUs
    assert auto_workers('auto', loaders=2) == 2


def test_supervised_loaders_iterate_the_labeled_set_alone():
    loaders = build_train_loaders(_data(_Ids(8)), batch_size=4, seed=0, world_size=1, rank=0,
                                  num_workers=0, pin_memory=False)
    assert [set(b) for b in loaders.start_epoch(0)] == [{'x_id', 'x_py', 'x_torch', 'x_np'}] * 2
    with pytest.raises(ValueError, match='fewer than one batch of 16'):
        build_train_loaders(_data(_Ids(8)), batch_size=16, seed=0, world_size=1, rank=0, num_workers=0,
                            pin_memory=False)


def _visuals(mcc: bool) -> dict:
    img = torch.randn(2, 3, 8, 8)
    lab = torch.randint(0, 3, (2, 8, 8))
    vis = {'img_x': img, 'img_s1': img, 'img_s2': img, 'img_w': img,
           'pred_x': torch.randn(2, 3, 8, 8), 'pred_s1': lab, 'pred_s2': lab, 'pred_fp': lab,
           'mask_x': lab, 'pl_s1': lab, 'pl_s2': lab, 'pl_fp': lab}
    if mcc:
        vis.update(mcc_s1=lab, mcc_s2=lab, mcc_fp=torch.full_like(lab, 255))
    return vis


def test_debug_panel_grid_matches_the_release_layout(tmp_path):
    grid = debug_panels.grid_for(_visuals(mcc=False))
    assert [[c and c[1] for c in row] for row in grid] == [
        ['Image L', 'Image S1', 'Image S2', 'Image FP'], ['Pred L', 'Pred S1', 'Pred S2', 'Pred FP'],
        ['GT L', 'PL S1', 'PL S2', 'PL FP']]
    grid = debug_panels.grid_for(_visuals(mcc=True))
    assert len(grid) == 4 and [c and c[1] for c in grid[3]] == [None, 'MC S1', 'MC S2', 'MC FP']
    assert debug_panels.grid_for({'img_x': torch.zeros(1, 3, 4, 4), 'other': torch.zeros(1, 4, 4)}) == [
        [('img_x', 'Image L'), ('other', 'other'), None, None]]

    palette = np.zeros((256, 3), np.uint8)
    palette[255] = (224, 224, 192)
    written = debug_panels.save_panels(_visuals(mcc=True), tmp_path, 96, 0, palette, max_images=1)
    assert [p.name for p, _ in written] == ['0000096_0-0.png']
    image = written[0][1]
    assert image.shape == (800, 800, 3)                 # figsize (2*4, 2*4) inches at 100 dpi
    assert (image.reshape(-1, 3) == (224, 224, 192)).all(1).any()   # the 255 guidance pixels
    assert colorize(np.array([[0, 255]]), [(1, 2, 3)]).tolist() == [[[1, 2, 3], [255, 255, 255]]]


def test_checkpoint_atomic_write_corrupt_file_and_rng(tmp_path):
    path = tmp_path / 'latest.pth'
    rng = ckpt.capture_rng()
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.save_checkpoint({'model': {'w': torch.ones(2)}, 'iteration': 3, 'rng': rng}, path)
    assert [p.name for p in tmp_path.iterdir()] == ['latest.pth']   # no temp file left
    state = ckpt.read_training_checkpoint(path)
    ckpt.restore_rng(state['rng'])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws

    path.write_bytes(path.read_bytes()[:50])            # truncated by a crash during a copy
    with pytest.raises(ckpt.CheckpointError, match='damaged'):
        ckpt.read_training_checkpoint(path)
    torch.save({'state_dict': {}}, path)
    with pytest.raises(ckpt.CheckpointError, match='not a semiseg training checkpoint'):
        ckpt.read_training_checkpoint(path)


def test_stop_signals_set_the_flag_and_handlers_are_restored():
    signals.clear_stop()
    before = signal.getsignal(signal.SIGUSR1)
    with signals.stop_signal_handlers():
        assert not signals.stop_requested()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert signals.stop_requested() and signals.stop_reason() == 'received SIGUSR1'
    assert signal.getsignal(signal.SIGUSR1) is before
    signals.clear_stop()
    signals.request_stop('slurm pre-emption')
    assert signals.stop_requested() and signals.stop_reason() == 'slurm pre-emption'
    signals.clear_stop()
