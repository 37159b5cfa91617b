"""Parity, second half: zegclip sliding-window evaluation (crop 512, stride 426) of a 512x683
input and the guidance labels of the whole (non-square: pos-embed resize) image."""
import pytest
import torch
from _model_golden_common import agreement, golden, golden_model, require_reference

from semiseg.evaluation.inference import predict

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def model():
    require_reference()
    return golden_model()


def test_zegclip_sliding_window_matches_release(model):
    ref = golden()
    x = torch.from_numpy(ref['slide_input'])
    scores = predict(model, x, 'zegclip_sliding_window', crop_size=512, stride=426,
                     out_size=x.shape[-2:])
    assert scores.shape == (1, 21, 512, 683)
    diff = (scores[:, :, ::8, ::8] - torch.from_numpy(ref['slide_logits_s8'])).abs().max().item()
    assert diff < 1e-4, diff
    assert agreement(scores.argmax(1), ref['slide_argmax']) >= 0.999


def test_guidance_labels_non_square_match_release(model):
    ref = golden()
    labels = model.guidance_labels(torch.from_numpy(ref['slide_input']), 0.5)
    assert labels.shape == (1, 512, 683)
    assert agreement(labels, ref['slide_maskclip_t05']) >= 0.999
