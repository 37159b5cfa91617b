"""UniMatch's DeepLabV3+ (configs dlv3p-r101 / -r50 / -xc65 / -resnet-tiny) against the release.

The R101 goldens (`unimatch_r101_golden_seed1.npz`) were computed by LiheYoung/UniMatch's own
`DeepLabV3Plus` with `synth_release_state_dict(shapes, seed=1)`; here the same weights go through
the release checkpoint format and `release_key_prefixes`. The R101 is built once per module.

Tolerances: eval mode (running BN statistics) reproduces the goldens to ~1e-6. The training-mode
FP call normalises with batch statistics through 100+ BatchNorms, which amplifies fp32 rounding:
on one machine, 1 vs 2 threads already differ by ~3e-4, and the fp32 golden itself is ~7e-4/9e-4
away from a float64 evaluation of the same network. Its check is therefore 3e-3 absolute (0.25% of
the largest logit), relative L2 and argmax agreement.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import load_reference_module, require_reference
from mmseg.registry import MODELS

import semiseg.models  # noqa: F401  (registers every model type)
from semiseg.models.builder import load_model_config
from semiseg.models.checkpoint import extract_state_dict

SHAPES = 'unimatch_r101_state_dict_shapes.json'
GOLDEN = 'unimatch_r101_golden_seed1.npz'
EVAL_ATOL = 1e-4
FP_ATOL = 3e-3
FP_REL_L2 = 2e-3
FP_ARGMAX = 0.995


def build(name: str, num_classes: int = 21, **backbone) -> torch.nn.Module:
    cfg = load_model_config(name)['model']
    cfg['decode_head']['num_classes'] = num_classes
    cfg['backbone']['pretrained'] = None
    cfg['backbone'].update(backbone)
    return MODELS.build(cfg)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """(exp 30 run 0's model loaded from the release checkpoint through semiseg.api, our state dict,
    release shape table, goldens)."""
    from semiseg.api import build_model, load_checkpoint
    root = require_reference(SHAPES, GOLDEN, 'make_goldens_allspark_unimatch.py', 'synth_weights.py')
    shapes = json.loads((root / SHAPES).read_text())
    synth = load_reference_module('make_goldens_allspark_unimatch').synth_release_state_dict
    sd = synth({k[len('module.'):]: v for k, v in shapes.items()}, 1)
    checkpoint = {'model': {'module.' + k: v for k, v in sd.items()}}  # as unimatch.py saves it
    path = tmp_path_factory.mktemp('unimatch') / 'best.pth'
    torch.save({**checkpoint, 'epoch': 79, 'previous_best': np.float64(75.9)}, path)  # numpy scalar, as released
    model = build_model(30, 0, pretrained=False)                # UniMatch VOC 92: DeepLabV3+ R101
    load_checkpoint(model, path)                                # semiseg.api: release keys, module. prefix
    ours = model.convert_release_state_dict(extract_state_dict(checkpoint, 'synthetic release'))
    golden = {k: torch.from_numpy(v) for k, v in np.load(root / GOLDEN).items()}
    return model, ours, shapes, golden


@pytest.fixture
def r101(release):
    """The loaded R101 with fresh weights and BN statistics (train-mode calls update them)."""
    model, ours, _, _ = release
    model.load_state_dict(ours)
    return model


def maxabs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_state_dict_equals_release_table_after_prefix_map(release):
    model, _, shapes, _ = release
    table = {k[len('module.'):]: torch.empty(v) for k, v in shapes.items()}
    renamed = model.convert_release_state_dict(table)
    own = model.state_dict()
    assert len(shapes) == len(renamed) == len(own) == 692
    assert list(renamed) == list(own)  # same keys, same order
    assert all(list(own[k].shape) == list(v.shape) for k, v in renamed.items())


def test_parameter_counts_equal_release(release):
    model = release[0]
    head = model.decode_head
    counts = {'total': n_params(model), 'backbone': n_params(model.backbone),
              'head': n_params(head.head), 'reduce': n_params(head.reduce),
              'fuse': n_params(head.fuse), 'classifier': n_params(head.classifier)}
    assert counts == {'total': 59_468_085, 'backbone': 42_623_936, 'head': 15_535_104,
                      'reduce': 12_384, 'fuse': 1_291_264, 'classifier': 5_397}


def test_eval_logits_match_golden(r101, release):
    g = release[3]
    r101.eval()
    with torch.no_grad():
        out = r101(g['eval_input'])
        odd = r101(g['odd_input'])
    assert out.shape == (2, 21, 128, 128) and odd.shape == (1, 21, 100, 150)
    assert maxabs(out, g['eval_logits']) < EVAL_ATOL
    assert maxabs(odd, g['odd_logits']) < EVAL_ATOL
    assert torch.equal(out.argmax(1), g['eval_logits'].argmax(1))


def test_eval_is_per_image(r101, release):
    x = release[3]['eval_input']
    r101.eval()
    with torch.no_grad():
        batch = r101(x)
        single = torch.cat([r101(x[i:i + 1]) for i in range(len(x))])
    assert maxabs(batch, single) < 1e-5


def _check_fp(out: torch.Tensor, gold: torch.Tensor) -> None:
    assert out.shape == gold.shape
    assert maxabs(out, gold) < FP_ATOL
    assert float((out - gold).norm() / gold.norm()) < FP_REL_L2
    assert float((out.argmax(1) == gold.argmax(1)).float().mean()) > FP_ARGMAX


def test_fp_with_recorded_masks_matches_golden(r101, release):
    g = release[3]
    r101.train()
    with torch.no_grad():
        out, out_fp = r101(g['fp_input'], need_fp=True, feature_masks=[g['fp_keep_c1'], g['fp_keep_c4']])
    _check_fp(out, g['fp_logits'])
    _check_fp(out_fp, g['fp_logits_fp'])


def test_fp_default_draw_reproduces_recorded_masks(r101, release):
    """With torch.manual_seed(fp_seed) our draw (c1's mask, then c4's) equals the release's."""
    g = release[3]
    seen = []
    hook = r101.decode_head.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    r101.train()
    try:
        with torch.no_grad():
            torch.manual_seed(int(g['fp_seed']))
            drawn = r101(g['fp_input'], need_fp=True)
    finally:
        hook.remove()
    n = len(g['fp_input'])
    keeps = []
    for feat in seen[0]:
        clean, dropped = feat[:n], feat[n:]
        assert bool((clean.abs().amax((2, 3)) > 0).all())  # a zero channel would hide the mask
        keeps.append((dropped.abs().amax((2, 3)) > 0).to(torch.uint8))
    assert torch.equal(keeps[0], g['fp_keep_c1']) and torch.equal(keeps[1], g['fp_keep_c4'])
    r101.load_state_dict(release[1])
    with torch.no_grad():
        replay = r101(g['fp_input'], need_fp=True, feature_masks=[g['fp_keep_c1'], g['fp_keep_c4']])
    assert torch.equal(drawn[0], replay[0]) and torch.equal(drawn[1], replay[1])


def test_train_mode_normalises_with_batch_statistics(r101, release):
    x = release[3]['fp_input'][:, :, :64, :64]
    bn = r101.backbone.bn1
    before = bn.running_mean.clone()
    seen = []
    hook = bn.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    r101.train()
    try:
        with torch.no_grad():
            first = r101(x[[0, 1]])
            second = r101(x[[0, 2]])
    finally:
        hook.remove()
    assert maxabs(first[0], second[0]) > 1e-3  # image 0's output depends on its batch partner
    expected = before
    for inp in seen:  # momentum-0.1 running-mean update per call
        expected = 0.9 * expected + 0.1 * inp.mean((0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)


def test_r50_variant():
    model = build('dlv3p-r50')
    assert n_params(model.backbone) == 23_631_808  # torchvision ResNet-50 minus fc, 128-ch deep stem
    assert [len(getattr(model.backbone, f'layer{i}')) for i in range(1, 5)] == [3, 4, 6, 3]


def test_xception_model_count_and_shapes():
    model = build('dlv3p-xc65', num_classes=81)
    assert n_params(model) == 54_726_881  # 54.7M, as the release logs for COCO
    assert n_params(model.backbone) == 37_867_312
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.0003 for m in bns)
    model.eval()
    with torch.no_grad():
        c1, c4 = model.backbone(torch.randn(1, 3, 32, 48))
        out = model(torch.randn(1, 3, 32, 48))
    assert c1.shape == (1, 256, 8, 12) and c4.shape == (1, 2048, 2, 3)
    assert out.shape == (1, 81, 32, 48)


def test_tiny_variant_trains_with_fp():
    torch.manual_seed(0)
    model = build('dlv3p-resnet-tiny', num_classes=5)
    assert n_params(model) < 2_000_000
    assert model.align_corners is True
    x = torch.randn(4, 3, 64, 64)
    model.train()
    c1, c4 = model.backbone(x)
    assert c1.shape[-2:] == (16, 16) and c4.shape[-2:] == (4, 4)  # strides 4 and 16
    out, out_fp = model(x, need_fp=True)
    assert out.shape == out_fp.shape == (4, 5, 64, 64)
    assert not torch.allclose(out, out_fp)
    (out.mean() + out_fp.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())
