"""UniMatch V2's evaluation protocols in `predict`: 'original' at a size multiple and the
shifted sliding window (LiheYoung/UniMatch-V2 `supervised.py`, `evaluate`), on tiny
deterministic models."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from semiseg.evaluation.inference import MODES, predict, shifted_window_starts


def conv_model(nclass=4, seed=0):
    """A per-pixel model: a 1x1 conv with fixed random weights."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, nclass, 1).eval()


class WindowRecorder(nn.Module):
    """Records (top, left, h, w) of each window from an image whose channels 0/1 hold the pixel's
    row/column; outputs a per-pixel function of the content with `nclass` channels."""

    def __init__(self, nclass=5):
        super().__init__()
        self.nclass = nclass
        self.windows = []

    def forward(self, x):
        self.windows.append((int(x[0, 0, 0, 0]), int(x[0, 1, 0, 0]), x.shape[-2], x.shape[-1]))
        return torch.cat([torch.sin(x[:, :1] * (k + 1) + x[:, 1:2]) for k in range(self.nclass)], 1)


def coordinate_image(h, w, b=1):
    rows = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    return torch.stack((rows, cols, torch.zeros(h, w))).expand(b, 3, h, w).clone()


def test_modes_listed_and_existing_modes_unchanged():
    assert 'shifted_sliding_window' in MODES and 'original' in MODES
    m = conv_model()
    x = torch.randn(1, 3, 20, 30)
    assert torch.equal(predict(m, x, 'original', 8), m(x))


def test_original_at_size_multiple():
    m = conv_model()
    x = torch.randn(2, 3, 100, 150)
    seen = []
    hook = m.register_forward_pre_hook(lambda mod, a: seen.append(tuple(a[0].shape[-2:])))
    out = predict(m, x, 'original', 518, size_multiple=14)
    hook.remove()
    assert seen == [(98, 154)]  # int(100/14 + .5)*14, int(150/14 + .5)*14
    resized = F.interpolate(x, (98, 154), mode='bilinear', align_corners=True)
    expected = F.interpolate(m(resized), (100, 150), mode='bilinear', align_corners=True)
    assert out.shape == (2, 4, 100, 150)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize('h, w, m, new', [(500, 375, 14, (504, 378)), (7, 6, 14, (14, 14)),
                                          (64, 64, 8, (64, 64)), (21, 35, 14, (28, 42))])
def test_original_rounds_half_up_to_the_multiple(h, w, m, new):
    seen = []
    model = conv_model()
    model.register_forward_pre_hook(lambda mod, a: seen.append(tuple(a[0].shape[-2:])))
    out = predict(model, torch.randn(1, 3, h, w), 'original', 0, size_multiple=m)
    assert seen == [new] and out.shape[-2:] == (h, w)


def test_shifted_starts_cityscapes():
    # 1024x2048, crop 798, stride int(798 * 2 / 3) = 532 (the tiling of LiheYoung/UniMatch-V2
    # `supervised.py`, `evaluate`)
    assert shifted_window_starts(1024, 798, 532) == [0, 226]
    assert shifted_window_starts(2048, 798, 532) == [0, 532, 1064, 1250]
    assert shifted_window_starts(798, 798, 532) == [0]
    assert shifted_window_starts(500, 798, 532) == [0]


@pytest.mark.parametrize('size, crop, stride', [(1024, 798, 532), (2048, 798, 532), (100, 30, 20),
                                                 (61, 30, 20), (60, 30, 20), (31, 30, 20),
                                                 (97, 12, 8)])
def test_shifted_windows_cover_and_stay_inside(size, crop, stride):
    starts = shifted_window_starts(size, crop, stride)
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert all(0 <= s and s + crop <= size for s in starts)
    assert starts[-1] + crop == size
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s:s + crop] = True
    assert covered.all()
    # the release's loop: row = min(row + stride, size - crop) until it reaches size - crop
    ref, pos = [0], 0
    while pos != size - crop:
        pos = min(pos + stride, size - crop)
        ref.append(pos)
    assert starts == ref


def test_shifted_sliding_window_sums_window_softmaxes():
    x = coordinate_image(50, 70, b=2)
    rec = WindowRecorder(nclass=5)
    out = predict(rec, x, 'shifted_sliding_window', 30)  # stride int(30 * 2 / 3) = 20
    rows, cols = [0, 20], [0, 20, 40]
    assert [(t, left) for t, left, _, _ in rec.windows] == [(r, c) for r in rows for c in cols]
    assert all((wh, ww) == (30, 30) for _, _, wh, ww in rec.windows)
    assert out.shape == (2, 5, 50, 70)  # the model's class count, not 19
    count = torch.zeros(50, 70)
    for r in rows:
        for c in cols:
            count[r:r + 30, c:c + 30] += 1
    # per-pixel model: the sum is count * softmax of the full-image logits
    expected = rec(x).softmax(dim=1) * count
    assert torch.allclose(out, expected, atol=1e-5)


def test_shifted_sliding_window_explicit_stride_and_short_side():
    x = coordinate_image(20, 45)  # height below the crop: one window row covering it
    rec = WindowRecorder()
    predict(rec, x, 'shifted_sliding_window', 24, stride=10)
    assert rec.windows == [(0, 0, 20, 24), (0, 10, 20, 24), (0, 20, 20, 24), (0, 21, 20, 24)]
    m = conv_model(nclass=3)
    out = predict(m, x, 'shifted_sliding_window', 24, stride=10)
    counts = torch.zeros(45)
    for left in (0, 10, 20, 21):
        counts[left:left + 24] += 1
    assert torch.allclose(out, m(x).softmax(1) * counts.view(1, 1, 1, 45), atol=1e-6)
