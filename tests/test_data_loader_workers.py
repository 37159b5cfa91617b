"""num_workers=auto shares the CPUs among the loaders by their measured per-sample cost."""
from __future__ import annotations

from semiseg.data.semi_dataset import AugConfig, SemiDataset
from semiseg.data.voc_like import make_voc_like
from semiseg.engine.loaders import MAX_AUTO_WORKERS, make_loader, prefetch_factor, sample_cost_ms, split_workers


def test_split_by_cost_within_bounds():
    assert split_workers(3, [1, 5, 4], cpus=64) == [3, 3, 3]                 # a number is taken as given
    assert split_workers('auto', [1, 1, 1], cpus=16) == [5, 5, 5]            # equal costs: an even split
    assert split_workers('auto', [10, 46, 40], cpus=16) == [2, 7, 6]         # 15 CPUs by cost
    assert split_workers('auto', [10, 46, 40], cpus=2) == [1, 1, 1]          # never fewer than one
    assert split_workers('auto', [10, 46, 40], cpus=5) == [1, 2, 1]
    assert max(split_workers('auto', [10, 46, 40], cpus=128)) == MAX_AUTO_WORKERS
    for cpus in range(2, 40):
        counts = split_workers('auto', [7, 30, 25], cpus=cpus)
        assert min(counts) >= 1 and (sum(counts) <= max(cpus - 1, 3))


def test_costs_follow_views_and_switches(tmp_path):
    entries = make_voc_like(tmp_path, 2, size=(30, 40))

    def cost(mode, views, **aug):
        return sample_cost_ms(SemiDataset(tmp_path, entries, mode, AugConfig(crop_size=512, **aug), views=views))
    unlabeled = ('img_w', 'img_s1', 'img_s2', 'ignore', 'box1', 'box2')
    labeled = ('img_x', 'mask_x')
    assert cost('train_u', unlabeled) > 3 * cost('train_l', labeled)
    assert cost('train_u', unlabeled, augment='fast') < cost('train_u', unlabeled) / 2
    assert cost('train_u', unlabeled, photometric_device=True) < cost('train_u', unlabeled, augment='fast') / 2
    assert cost('train_u', ('img_w', 'img_s1', 'ignore')) < cost('train_u', unlabeled)
    assert sample_cost_ms(object()) == 1.0                                   # stand-ins count as one unit


def test_prefetch_keeps_four_batches_in_flight(tmp_path):
    entries = make_voc_like(tmp_path, 2, size=(30, 40))
    ds = SemiDataset(tmp_path, entries, 'train_l', AugConfig(crop_size=32))
    assert make_loader(ds, 1, 1, False).prefetch_factor == 4
    assert make_loader(ds, 1, 2, False).prefetch_factor == 2
    assert [prefetch_factor(w) for w in (1, 2, 3, 6, 16)] == [4, 2, 2, 2, 2]
