"""Losses against values computed by hand on tiny maps (google-research/semivl `semivl.py` and
`utils/train_utils.py`; LiheYoung/UniMatch `util/ohem.py`)."""
import math

import pytest
import torch

from semiseg.methods.losses import (
    CrossEntropy,
    OhemCrossEntropy,
    build_criterion,
    confidence_weighted_loss,
    mcc_enabled,
    mcc_lambda,
    mcc_loss,
    mmseg_unsupervised_loss,
    unsupervised_ce_map,
)

LOG3 = math.log(3.0)


def two_class_logits(shape=(1, 3, 3)):
    """Logits [log 3, 0] everywhere: p(class 0) = 3/4, CE(0) = log(4/3), CE(1) = log 4."""
    b, h, w = shape
    logits = torch.zeros(b, 2, h, w)
    logits[:, 0] = LOG3
    return logits


def test_ce_ignores_255_and_means_over_valid():
    target = torch.tensor([[[0, 0, 1], [1, 255, 0], [255, 255, 1]]])
    loss = build_criterion({'name': 'CELoss', 'kwargs': {'ignore_index': 255}})(
        two_class_logits(), target)
    expected = (3 * math.log(4 / 3) + 3 * math.log(4)) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_mmseg_criterion_is_the_same_ce():
    target = torch.tensor([[[0, 1, 1], [1, 255, 0], [0, 0, 1]]])
    mmseg_ce = build_criterion({'name': 'mmseg', 'kwargs': {'ignore_index': 255}})
    a = mmseg_ce(two_class_logits(), target)
    b = build_criterion('CELoss')(two_class_logits(), target)
    assert a.item() == pytest.approx(b.item())


def test_ce_all_ignored_is_zero_with_grad():
    pred = two_class_logits().requires_grad_()
    loss = CrossEntropy()(pred, torch.full((1, 3, 3), 255))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_build_criterion_errors():
    with pytest.raises(ValueError, match='CELoss, mmseg, OHEM'):
        build_criterion({'name': 'Dice', 'kwargs': {}})
    with pytest.raises(ValueError, match='ignore_index'):
        build_criterion({'name': 'CELoss', 'kwargs': {'thresh': 0.7}})
    ohem = build_criterion({'name': 'OHEM', 'kwargs': {'ignore_index': 255}})
    assert isinstance(ohem, OhemCrossEntropy) and ohem.thresh == 0.7 and ohem.min_kept == 200000


def ohem_case():
    """2x2 map; probabilities of the GT class 0.9, 0.6, 0.5, 0.8 (class 1 logit 0)."""
    probs = torch.tensor([0.9, 0.6, 0.5, 0.8])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0] = torch.log(probs / (1 - probs)).reshape(2, 2)
    return logits, torch.zeros(1, 2, 2, dtype=torch.long), probs


def test_ohem_keeps_hard_pixels():
    logits, target, p = ohem_case()
    # min_kept 2: 2nd smallest prob 0.6 < 0.7 -> threshold 0.7 -> keep 0.6 and 0.5
    loss = OhemCrossEntropy(thresh=0.7, min_kept=2)(logits, target)
    assert loss.item() == pytest.approx(-(math.log(0.6) + math.log(0.5)) / 2, rel=1e-5)
    # min_kept 3: 3rd smallest 0.8 > 0.7 -> threshold raised to 0.8 -> keep 0.6, 0.5, 0.8
    loss = OhemCrossEntropy(thresh=0.7, min_kept=3)(logits, target)
    assert loss.item() == pytest.approx(-(math.log(0.6 * 0.5 * 0.8)) / 3, rel=1e-5)
    # fewer valid pixels than min_kept -> plain CE over all
    loss = OhemCrossEntropy(thresh=0.7, min_kept=5)(logits, target)
    assert loss.item() == pytest.approx(-torch.log(p).mean().item(), rel=1e-5)
    # an ignored pixel (the 0.5 one) is never kept: probs left 0.9, 0.6, 0.8; the 2nd smallest,
    # 0.8, raises the threshold -> keep 0.6 and 0.8
    target[0, 1, 0] = 255
    loss = OhemCrossEntropy(thresh=0.7, min_kept=2)(logits, target)
    assert loss.item() == pytest.approx(-(math.log(0.6) + math.log(0.8)) / 2, rel=1e-5)


def cwl_case():
    """Two 3x3 images: loss, confidence and ignore maps."""
    loss = torch.stack([torch.arange(1, 10, dtype=torch.float).reshape(3, 3),
                        torch.full((3, 3), 2.0)])
    conf = torch.stack([torch.tensor([[1, .5, 1], [1, 1, .2], [.96, .95, .94]]),
                        torch.ones(3, 3)])
    ignore = torch.zeros(2, 3, 3, dtype=torch.long)
    ignore[0, 2, 1:] = 255
    ignore[1, 0, 0] = 255
    return loss, conf, ignore


def test_confidence_weighted_pixelwise():
    loss, conf, ignore = cwl_case()
    # valid 7 + 8 = 15; confident & valid: image 0 -> 1+3+4+5+7 = 20, image 1 -> 8*2 = 16
    out = confidence_weighted_loss(loss, conf, ignore, 0.95, 'pixelwise')
    assert out.item() == pytest.approx(36 / 15)


def test_confidence_weighted_pixelratio_counts_padded_pixels():
    loss, conf, ignore = cwl_case()
    # r0 = 5/7, r1 = 8/8; every pixel (padded too) is weighted: (45*5/7 + 18*1) / 15
    out = confidence_weighted_loss(loss, conf, ignore, 0.95, 'pixelratio')
    assert out.item() == pytest.approx((45 * 5 / 7 + 18) / 15, rel=1e-6)


def test_confidence_weighted_pixelavg_mixes_images():
    loss, conf, ignore = cwl_case()
    # a0 = (1+.5+1+1+1+.2+.96)/7, a1 = 1; batch-total loss 63 times each a_b, summed, / 15
    a0 = (1 + .5 + 1 + 1 + 1 + .2 + .96) / 7
    out = confidence_weighted_loss(loss, conf, ignore, 0.95, 'pixelavg')
    assert out.item() == pytest.approx(63 * (a0 + 1) / 15, rel=1e-6)
    # batch 1: a per-image weight
    out = confidence_weighted_loss(loss[:1], conf[:1], ignore[:1], 0.95, 'pixelavg')
    assert out.item() == pytest.approx(45 * a0 / 7, rel=1e-6)


def test_confidence_weighted_unknown_mode():
    loss, conf, ignore = cwl_case()
    with pytest.raises(ValueError, match='pixelwise, pixelratio, pixelavg'):
        confidence_weighted_loss(loss, conf, ignore, 0.95, 'pixel')


def test_mmseg_unsupervised_loss_uses_unmasked_labels_scaled_by_confidence():
    """The release feeds the raw argmax pseudo-labels to the head loss (no 255 anywhere) and scales
    the result by the confident valid fraction; it is not the pixelwise CE of the CELoss path."""
    torch.manual_seed(0)
    pred = torch.randn(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 3, 3))
    _, conf, ignore = cwl_case()
    seen = []

    def head_loss(p, t):
        seen.append(t)
        return CrossEntropy()(p, t)
    scaled, fraction = mmseg_unsupervised_loss(head_loss, pred, target, conf, ignore, 0.95)
    assert fraction.item() == pytest.approx(13 / 15)
    assert torch.equal(seen[0], target)                     # unmasked, padding included
    mean_ce = unsupervised_ce_map(pred, target).mean()
    assert scaled.item() == pytest.approx(mean_ce.item() * 13 / 15, rel=1e-6)
    pixelwise = confidence_weighted_loss(unsupervised_ce_map(pred, target), conf, ignore, 0.95)
    assert scaled.item() != pytest.approx(pixelwise.item(), rel=1e-3)


def test_mcc_reductions():
    target = torch.tensor([[[0, 0, 1], [1, 255, 255], [255, 255, 255]]])
    ignore = torch.tensor([[[0, 0, 0], [0, 0, 0], [0, 255, 255]]])
    pred = two_class_logits()
    total = 2 * math.log(4 / 3) + 2 * math.log(4)
    assert mcc_loss(pred, target, 'mean').item() == pytest.approx(total / 4, rel=1e-6)
    assert mcc_loss(pred, target, 'mean_valid', ignore).item() == pytest.approx(total / 7, rel=1e-6)
    assert mcc_loss(pred, target, 'mean_all').item() == pytest.approx(total / 9, rel=1e-6)
    with pytest.raises(ValueError, match='ignore mask'):
        mcc_loss(pred, target, 'mean_valid')
    with pytest.raises(ValueError, match='mean, mean_valid, mean_all'):
        mcc_loss(pred, target, 'sum')


def test_mcc_lambda_decay():
    assert mcc_lambda(0.3, 50, 100) == 0.3
    assert mcc_lambda([0.1, 0], 0, 100) == pytest.approx(0.1)
    assert mcc_lambda([0.1, 0], 50, 100) == pytest.approx(0.05)
    assert mcc_lambda([0.1, 0], 75, 100) == pytest.approx(0.025)
    assert mcc_lambda([0.2, 0.1], 100, 100) == pytest.approx(0.1)
    with pytest.raises(ValueError, match='start, end'):
        mcc_lambda([0.1, 0.2, 0.3], 0, 10)
    assert mcc_enabled([0.1, 0]) and not mcc_enabled(0) and not mcc_enabled(None)
