"""mIoU accounting (google-research/semivl `third_party/unimatch/supervised.py`, `evaluate`) against
hand values and mmseg's IoUMetric."""
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from semiseg.evaluation.metrics import IoUAccumulator
from semiseg.evaluation.sampler import DistributedEvalSampler


def test_hand_computed_iou():
    gt = torch.tensor([[0, 0, 1], [1, 255, 2], [2, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2], [0, 2, 1]])
    acc = IoUAccumulator(4)
    acc.update(pred, gt)
    # after pred := 255 where gt == 255: pred = [[0,1,1],[1,255,2],[0,2,255]]
    # class 0: I 1, pred 2, gt 2 -> U 3; class 1: I 2, pred 3, gt 2 -> U 3;
    # class 2: I 2, pred 2, gt 3 -> U 3; class 3 absent -> IoU 0, still in the mean
    miou, per_class = acc.compute()
    assert per_class == pytest.approx([100 / 3, 100 * 2 / 3, 100 * 2 / 3, 0.0])
    assert miou == pytest.approx(sum(per_class) / 4)


def test_values_outside_classes_are_not_counted():
    acc = IoUAccumulator(2)
    acc.update(torch.tensor([0, 1, 1]), torch.tensor([0, 7, 1]))
    _, per_class = acc.compute()
    assert per_class == pytest.approx([100.0, 50.0])


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match='same shape'):
        IoUAccumulator(2).update(torch.zeros(2, 3), torch.zeros(3, 2))


def test_matches_mmseg_iou_metric():
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    K = 6
    g = torch.Generator().manual_seed(0)
    metric = IoUMetric(ignore_index=255, iou_metrics=['mIoU'])
    metric.dataset_meta = {'classes': [f'c{i}' for i in range(K)]}
    acc = IoUAccumulator(K)
    for i in range(5):
        h, w = 7 + i, 9
        gt = torch.randint(0, K - 1, (h, w), generator=g)   # class K-1 never in the GT
        gt[torch.rand(h, w, generator=g) < 0.2] = 255
        pred = torch.randint(0, K - 2, (h, w), generator=g)  # nor in the prediction
        pred[gt == 1] = 1                                    # some agreement
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=pred[None])
        sample.gt_sem_seg = PixelData(data=gt[None])
        metric.process({}, [sample.to_dict()])
        acc.update(pred, gt)
    totals = [sum(r[j] for r in metric.results) for j in range(4)]
    ref = IoUMetric.total_area_to_metrics(*totals, metrics=['mIoU'])['IoU']
    miou, ours = acc.compute()
    ours = np.array(ours) / 100
    defined = ~np.isnan(ref)
    assert not defined[K - 1] and defined[:K - 2].all()
    np.testing.assert_allclose(ours[defined], ref[defined], rtol=1e-6)
    # documented difference: an absent class is 0 here and excluded by mmseg's nanmean
    assert ours[K - 1] == 0.0
    assert miou / 100 == pytest.approx(np.nanmean(ref) * defined.sum() / K, rel=1e-6)


def test_eval_sampler_never_duplicates():
    data = list(range(11))
    seen = []
    for rank in range(4):
        s = DistributedEvalSampler(data, num_replicas=4, rank=rank)
        idx = list(s)
        assert len(idx) == len(s)
        seen += idx
    assert sorted(seen) == data
    with pytest.raises(ValueError, match='rank'):
        DistributedEvalSampler(data, num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match='process group'):
        DistributedEvalSampler(data)


def _reduce_worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)  # a forked child cannot reuse the parent's OpenMP pool
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        g = torch.Generator().manual_seed(rank)
        acc = IoUAccumulator(3)
        for _ in range(rank + 1):  # unequal image counts per rank
            acc.update(torch.randint(0, 3, (5, 5), generator=g),
                       torch.randint(0, 3, (5, 5), generator=g))
        acc.all_reduce()
        acc.all_reduce()  # idempotent
        if rank == 0:
            torch.save(acc.compute(), out_file)
    finally:
        dist.destroy_process_group()


def test_all_reduce_sums_over_ranks(tmp_path):
    mp.start_processes(_reduce_worker, args=(2, str(tmp_path / 'init'), str(tmp_path / 'out.pt')),
                       nprocs=2, start_method='fork')
    ref = IoUAccumulator(3)
    for rank in range(2):
        g = torch.Generator().manual_seed(rank)
        for _ in range(rank + 1):
            ref.update(torch.randint(0, 3, (5, 5), generator=g),
                       torch.randint(0, 3, (5, 5), generator=g))
    miou, per_class = torch.load(tmp_path / 'out.pt', weights_only=True)
    assert per_class == pytest.approx(ref.compute()[1])
    assert not math.isnan(miou)
