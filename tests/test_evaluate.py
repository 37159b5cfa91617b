"""The evaluation loop on a stand-in model and a tiny generated val set."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from semiseg.engine.loaders import build_eval_loader
from semiseg.evaluation import IoUAccumulator, evaluate

NCLASS = 3


class ThresholdModel(nn.Module):
    """Class = number of positive channels among the first two (0, 1 or 2): its logits peak
    at that class. `flip` swaps classes 1 and 2 to make errors."""

    def __init__(self, flip: bool = False):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.flip = flip

    def forward(self, x):
        count = (x[:, :2] > 0).sum(1)
        if self.flip:
            count = torch.where(count > 0, 3 - count, count)
        return F.one_hot(count, NCLASS).permute(0, 3, 1, 2).float() * self.scale


def label_of(img):
    return (img[:2] > 0).sum(0)


def make_val(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        img = torch.randn(3, 20 + 3 * i, 25, generator=g)
        mask = label_of(img)
        mask[:2] = 255
        items.append({'img': img, 'mask': mask, 'id': f'img{i}'})
    return items


def resize_predict(model, images, mode, crop_size, stride=None, out_size=None, size_multiple=None, max_batch=None):
    """A stand-in for semiseg.evaluation.inference.predict ('original' + resize)."""
    logits = model(images)
    return F.interpolate(logits, size=out_size) if out_size else logits


CFG = {'eval_mode': 'original', 'crop_size': 16, 'nclass': NCLASS}


def test_perfect_model_scores_100():
    out = evaluate(ThresholdModel(), build_eval_loader(make_val(), distributed=False), CFG,
                   predict_fn=resize_predict)
    assert out['miou'] == pytest.approx(100.0)
    assert out['per_class_iou'] == pytest.approx([100.0] * NCLASS)


def test_errors_counted_like_the_accumulator_and_mode_restored():
    model = ThresholdModel(flip=True)
    model.train()
    out = evaluate(model, build_eval_loader(make_val(), distributed=False), CFG,
                   predict_fn=resize_predict)
    assert model.training
    ref = IoUAccumulator(NCLASS)
    for item in make_val():
        img, mask = item['img'], item['mask']
        ref.update(ThresholdModel(flip=True)(img[None]).argmax(1)[0], mask)
    assert out['per_class_iou'] == pytest.approx(ref.compute()[1])
    assert out['per_class_iou'][0] == pytest.approx(100.0) and out['miou'] < 50


def test_config_errors():
    loader = build_eval_loader(make_val(1), distributed=False)
    with pytest.raises(KeyError, match='nclass'):
        evaluate(ThresholdModel(), loader, {'eval_mode': 'original', 'crop_size': 16})
    with pytest.raises(KeyError, match='stride'):
        evaluate(ThresholdModel(), loader, {**CFG, 'eval_mode': 'zegclip_sliding_window'},
                 predict_fn=resize_predict)


def test_with_real_inference_modes():
    inference = pytest.importorskip('semiseg.evaluation.inference')
    loader = build_eval_loader(make_val(), distributed=False)
    for mode, extra in (('original', {}), ('sliding_window', {}), ('center_crop', {}),
                        ('padded_sliding_window', {'stride': 0.5}),
                        ('zegclip_sliding_window', {'stride': 10})):
        out = evaluate(ThresholdModel(), loader, {**CFG, 'eval_mode': mode, **extra},
                       predict_fn=inference.predict)
        assert out['miou'] == pytest.approx(100.0), mode


def _eval_worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)  # a forked child cannot reuse the parent's OpenMP pool
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        loader = build_eval_loader(make_val(5))
        assert len(loader) == (3 if rank == 0 else 2)
        out = evaluate(ThresholdModel(flip=True), loader, CFG, predict_fn=resize_predict)
        torch.save(out, f'{out_file}.{rank}')
    finally:
        dist.destroy_process_group()


def test_distributed_counts_each_image_once(tmp_path):
    out_file = str(tmp_path / 'out')
    mp.start_processes(_eval_worker, args=(2, str(tmp_path / 'init'), out_file), nprocs=2,
                       start_method='fork')
    single = evaluate(ThresholdModel(flip=True), build_eval_loader(make_val(5), distributed=False),
                      CFG, predict_fn=resize_predict)
    for rank in range(2):
        out = torch.load(f'{out_file}.{rank}', weights_only=True)
        assert out['per_class_iou'] == pytest.approx(single['per_class_iou'])
