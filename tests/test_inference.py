"""Inference modes (google-research/semivl `third_party/unimatch/supervised.py`, `predict`) with
recording fake models: window placement, accumulation rule (softmax sum vs averaged logits),
padding, final resize."""
import pytest
import torch
import torch.nn.functional as F

from semiseg.evaluation.inference import MODES, center_crop, predict


class Recorder:
    """Logits = a fixed per-pixel function of the window's content; records window shapes."""

    def __init__(self, nclass=3):
        self.nclass = nclass
        self.windows = []

    def __call__(self, x):
        self.windows.append(tuple(x.shape[-2:]))
        return torch.cat([x[:, :1] * (k + 1) for k in range(self.nclass)], dim=1)


def image(h, w, b=1):
    return torch.arange(b * h * w, dtype=torch.float32).reshape(b, 1, h, w).expand(b, 3, h, w) / (h * w)


def test_original_and_center_crop():
    x = image(10, 14)
    m = Recorder()
    assert torch.equal(predict(m, x, 'original', 8), m(x))
    out = predict(m, x, 'center_crop', 8)
    assert out.shape == (1, 3, 8, 8)
    assert torch.equal(center_crop(x, 8), x[..., 1:9, 3:11])


def test_zegclip_windows_voc_example():
    """512x683 with crop 512, stride 426: windows x in [0, 512) and [171, 683)."""
    x = torch.zeros(1, 3, 512, 683)
    x[..., 171:512] = 1.0
    seen = []

    def model(win):
        seen.append(win.shape[-2:])
        return win[:, :1].repeat(1, 2, 1, 1) * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    out = predict(model, x, 'zegclip_sliding_window', crop_size=512, stride=426)
    assert seen == [(512, 512), (512, 512)]
    assert out.shape == (1, 2, 512, 683)
    assert torch.allclose(out, x[:, :1] * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1))


def test_zegclip_average_by_count_and_small_images():
    calls = []

    def model(win):
        calls.append(tuple(win.shape[-2:]))
        return torch.ones(win.shape[0], 2, *win.shape[-2:]) * len(calls)
    out = predict(model, torch.zeros(1, 3, 8, 13), 'zegclip_sliding_window', 8, stride=4)
    # n_w = (13 - 8 + 3) // 4 + 1 = 3 windows: x in [0,8), [4,12), [5,13)
    assert calls == [(8, 8)] * 3
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 0, 12] == 3
    assert out[0, 0, 0, 4] == pytest.approx(1.5)  # (1 + 2) / 2
    assert out[0, 0, 0, 5] == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    calls.clear()
    small = predict(model, torch.zeros(1, 3, 5, 6), 'zegclip_sliding_window', 8, stride=4)
    assert calls == [(5, 6)] and small.shape == (1, 2, 5, 6)  # window shrinks to the image


def test_zegclip_resizes_to_out_size_align_corners_true():
    logits = torch.randn(1, 2, 6, 6)
    out = predict(lambda w: logits, torch.zeros(1, 3, 6, 6), 'zegclip_sliding_window', 6,
                  stride=4, out_size=(11, 9))
    ref = F.interpolate(logits, (11, 9), mode='bilinear', align_corners=True)
    assert torch.allclose(out, ref)


def test_sliding_window_cityscapes_tiling_scaled():
    """1024x2048 with crop 801 gives rows {0, 534}, cols {0, 534, 1068, 1602}: 8 unpadded
    windows; the same tiling scaled down (crop 9, stride 6) on 12x24 is checked here."""
    m = Recorder()
    x = image(12, 24)
    out = predict(m, x, 'sliding_window', 9)
    assert m.windows == [(9, 9), (9, 9), (9, 9), (9, 6), (6, 9), (6, 9), (6, 9), (6, 6)]
    # softmax sums without count normalisation: overlap pixels sum to 2 or 4
    total = out.sum(1)
    assert torch.allclose(total[0, 0, 0], torch.tensor(1.0))
    assert torch.allclose(total[0, 0, 7], torch.tensor(2.0))
    assert torch.allclose(total[0, 7, 7], torch.tensor(4.0))


def test_padded_sliding_window_pads_and_crops():
    m = Recorder()
    x = image(12, 24)
    out = predict(m, x, 'padded_sliding_window', 9, stride=2 / 3)
    assert set(m.windows) == {(9, 9)} and len(m.windows) == 8
    assert out.shape == (1, 3, 12, 24)
    ref = predict(Recorder(), x, 'sliding_window', 9)
    assert torch.allclose(out, ref)  # this fake model is local, so padding does not matter


def test_batched_sliding_window():
    x = image(12, 24, b=2)
    out = predict(Recorder(), x, 'sliding_window', 9)
    assert out.shape == (2, 3, 12, 24)


def test_errors():
    m = Recorder()
    with pytest.raises(ValueError, match='unknown eval mode'):
        predict(m, image(8, 8), 'bogus', 8)
    with pytest.raises(ValueError, match='needs a stride'):
        predict(m, image(8, 8), 'zegclip_sliding_window', 8)
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        predict(m, torch.zeros(3, 8, 8), 'original', 8)
    assert len(MODES) == 6
