"""THE parity test: our exp-40 model vs the release's outputs on synthetic weights (square input).

Loads `synth_state_dict(shapes, seed=1)` (the release's key table, `module.` prefixes) into the
exp-40 run-0 model and compares the plain forward and the MaskCLIP guidance labels with
`semivl_exp40_golden_seed1.npz`. The sliding-window half is tests/test_model_golden_slide.py.
"""
import pytest
import torch
from _model_golden_common import (
    agreement,
    exp40_run0_cfg,
    golden,
    golden_model,
    release_shapes,
    require_reference,
    text,
)

torch.set_num_threads(2)


@pytest.fixture(scope='module')
def model():
    require_reference()
    return golden_model()


def test_state_dict_keys_equal_release_table(model):
    ref = {k[len('module.'):]: v for k, v in release_shapes().items()}
    sd = model.state_dict()
    assert list(sd) == list(ref)  # same keys, same (registration) order
    assert {k: list(v.shape) for k, v in sd.items()} == ref


def test_parameter_counts(model):
    bb = model.backbone
    assert sum(p.numel() for p in bb.parameters()) == 86_828_544
    assert sum(p.numel() for p in bb.parameters() if p.requires_grad) == 29_135_616
    assert all(('attn' in n or 'pos_embed' in n) == p.requires_grad
               for n, p in bb.named_parameters())
    assert sum(p.numel() for p in model.decode_head.parameters()) == 2_217_185
    assert sum(p.numel() for p in model.clip_encoder.parameters()) == 86_828_544
    assert sum(p.numel() for p in model.parameters()) == 175_874_273  # "175.9M"
    assert not any(p.requires_grad for p in model.clip_encoder.parameters())


def test_square_forward_matches_release(model):
    ref = golden()
    x = torch.from_numpy(ref['sq_input'])
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (1, 21, 512, 512)
    diff = (logits[:, :, ::8, ::8] - torch.from_numpy(ref['sq_logits_s8'])).abs().max().item()
    assert diff < 1e-4, diff
    assert agreement(logits.argmax(1), ref['sq_argmax']) >= 0.999

    labels = model.guidance_labels(x, 0.5)
    assert labels.dtype == torch.int64 and labels.shape == (1, 512, 512)
    assert agreement(labels, ref['sq_maskclip_t05']) >= 0.999


def test_concept_groups_are_needed_for_guidance(model):
    """Guards the grouping: a wrong (shifted) grouping must not reproduce the labels."""
    from semiseg.data.class_definitions import PASCAL_CONCEPTS_4
    from semiseg.models.text_embeddings import groups_from_concepts
    assert exp40_run0_cfg()['mcc_text'] == 'concept4_single'
    assert model.mcc_concept_groups == groups_from_concepts(PASCAL_CONCEPTS_4)
    assert model.mcc_text_embedding.shape == text('voc12_wbg_concept4_single').shape
