"""UniMatch V2's DPT + DINOv2 model vs the release's outputs on synthetic weights.

The DINOv2-S model (`configs/models/dpt-dinov2s.py`) loads `synth_unimatch_v2_state_dict(shapes, 1)`
as a release checkpoint (`module.` keys, `head.` -> `decode_head.`) and is compared with
`unimatch_v2_dinov2s_golden_seed1.npz` (fp32, CPU; see ../shared/reference/README.md). The golden
forwards use the explicit attention the release ran; SDPA is compared with it separately. The
rest (pos-embed interpolation, attention switch, checkpointing) runs on the tiny config.
"""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_reference_module, require_reference

from semiseg.evaluation.inference import predict
from semiseg.models.backbones.dinov2 import DINOv2ViT, interpolate_pos_embed
from semiseg.models.perturb import complementary_masks
from semiseg.utils.pos_embed import resize_pos_embed

torch.set_num_threads(2)

SHAPES = 'unimatch_v2_dinov2s_state_dict_shapes.json'
GOLDEN = 'unimatch_v2_dinov2s_golden_seed1.npz'
LOGIT_TOL = 1e-4
FEATURE_TOL = 1e-5
MAX_ARGMAX_FLIPS = 8  # top-two gaps below 1e-4 occur at 1-7 positions per stored array


def build(name, num_classes=21, **backbone):
    from mmseg.registry import MODELS

    import semiseg.models  # noqa: F401  (registers everything)
    from semiseg.models.builder import load_model_config
    cfg = load_model_config(name)['model']
    cfg['decode_head']['num_classes'] = num_classes
    cfg['backbone'].update(pretrained=None, **backbone)
    return MODELS.build(cfg)


def counts(model):
    def n(m):
        return sum(p.numel() for p in m.parameters())
    return n(model), n(model.backbone), n(model.decode_head)


@pytest.fixture(scope='module')
def release():
    root = require_reference(SHAPES, GOLDEN, 'make_golden_unimatch_v2.py')
    shapes = json.loads((root / SHAPES).read_text())
    return shapes, dict(np.load(root / GOLDEN))


@pytest.fixture(scope='module')
def model(release, tmp_path_factory):
    """Experiment 60 run 0's model (`semiseg.api.build_model(60, 0)`, DINOv2-S + DPT), loaded by
    `semiseg.api.load_checkpoint` from the synthetic weights saved as unimatch_v2.py saves them."""
    from semiseg.api import build_model, load_checkpoint
    shapes, _ = release
    synth = load_reference_module('make_golden_unimatch_v2').synth_unimatch_v2_state_dict
    sd = synth({k[len('module.'):]: v for k, v in shapes.items()}, 1)
    path = tmp_path_factory.mktemp('unimatch_v2') / 'latest.pth'
    state = {'module.' + k: v for k, v in sd.items()}
    torch.save({'model': state, 'model_ema': state, 'epoch': 3, 'previous_best': 70.0}, path)
    m = build_model(60, 0, pretrained=False, model_args={'backbone': {'attn_impl': 'math'}})
    load_checkpoint(m, path)
    return m.eval()


def flips(logits, ref_argmax):
    return int((logits.argmax(1).numpy() != ref_argmax).sum())


def test_keys_shapes_and_parameter_counts(model, release):
    shapes, _ = release
    ref = model.convert_release_state_dict({k[len('module.'):]: v for k, v in shapes.items()})
    sd = model.state_dict()
    assert len(sd) == 237 and list(sd) == list(ref)  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == ref
    assert counts(model) == (24_795_637, 22_056_576, 2_739_061)


@pytest.mark.parametrize('name, expected', [
    ('dpt-dinov2b', (97_528_789, 86_580_480, 10_948_309)),     # release logs 86.6M / 10.9M
    ('dpt-dinov2l', (335_579_157, 304_368_640, 31_210_517)),   # 304.4M / 31.2M
])
def test_base_and_large_parameter_counts(name, expected):
    with torch.device('meta'):  # shapes only, no memory or init time
        model = build(name)
    assert counts(model) == expected


def test_giant_preset_has_the_swiglu_ffn():
    with torch.device('meta'):
        giant = DINOv2ViT(arch='giant')
    # official dinov2_vitg14 layout: SwiGLU (w12, w3) with hidden 4096; timm's
    # vit_giant_patch14_dinov2 has the same count without mask_token
    assert giant.blocks[0].mlp.w12.weight.shape == (8192, 1536)
    assert giant.blocks[0].mlp.w3.weight.shape == (1536, 4096)
    assert sum(p.numel() for p in giant.parameters()) == 1_136_480_768
    assert giant.out_indices == [9, 19, 29, 39]


def test_eval_forward_matches_release(model, release):
    _, g = release
    with torch.no_grad():
        y = model(torch.from_numpy(g['eval_input']))
    assert y.shape == (2, 21, 224, 224)
    diff = (y[:, :, ::2, ::2] - torch.from_numpy(g['eval_logits_s2'])).abs().max().item()
    assert diff < LOGIT_TOL, diff
    assert flips(y, g['eval_argmax']) <= MAX_ARGMAX_FLIPS


def test_rect_forward_and_features_match_release(model, release):
    _, g = release
    x = torch.from_numpy(g['rect_input'])  # 126x182: 9x13 patches, interpolated pos-embed
    with torch.no_grad():
        y = model(x)
        tokens = model.backbone.forward_intermediates(x, output_fmt='NLC')
        maps = model.backbone(x)
    diff = (y - torch.from_numpy(g['rect_logits'])).abs().max().item()
    assert diff < LOGIT_TOL, diff
    assert flips(y, g['rect_argmax']) <= MAX_ARGMAX_FLIPS
    fdiff = (torch.stack(tokens) - torch.from_numpy(g['rect_features'])).abs().max().item()
    assert fdiff < FEATURE_TOL, fdiff
    # NCHW maps are the same tokens in row-major patch order
    assert [tuple(m.shape) for m in maps] == [(1, 384, 9, 13)] * 4
    assert torch.equal(maps[2].flatten(2).transpose(1, 2), tokens[2])


def test_original_protocol_matches_release(model, release):
    _, g = release
    x = torch.from_numpy(g['orig_input'])  # 100x150 -> 98x154 -> 100x150
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        y = predict(model, x, 'original', crop_size=518, size_multiple=14)
    finally:
        hook.remove()
    assert len(seen) == 1
    assert (seen[0] - torch.from_numpy(g['orig_resized_input'])).abs().max().item() < 1e-6
    with torch.no_grad():
        y_rs = model(seen[0])
    assert (y_rs - torch.from_numpy(g['orig_resized_logits'])).abs().max().item() < LOGIT_TOL
    diff = (y - torch.from_numpy(g['orig_logits'])).abs().max().item()
    assert y.shape == (1, 21, 100, 150) and diff < LOGIT_TOL, diff
    assert flips(y, g['orig_argmax']) <= MAX_ARGMAX_FLIPS


def test_complementary_dropout_forward_matches_release(model, release):
    _, g = release
    model.train()
    try:
        with torch.no_grad():
            y = model(torch.from_numpy(g['cd_input']), comp_drop=True,
                      feature_masks=torch.from_numpy(g['cd_mask']))
    finally:
        model.eval()
    diff = (y[:, :, ::2, ::2] - torch.from_numpy(g['cd_logits_s2'])).abs().max().item()
    assert diff < LOGIT_TOL, diff
    assert flips(y, g['cd_argmax']) <= MAX_ARGMAX_FLIPS


def test_complementary_mask_draw_reproduces_release(release):
    _, g = release
    pairs, dim = g['cd_binomial'].shape
    torch.manual_seed(int(g['cd_seed']))
    mask = complementary_masks(pairs, dim, 0.5)
    assert torch.equal(mask, torch.from_numpy(g['cd_mask']))
    kept = g['cd_randperm'][:int(pairs * 0.5)]
    dropped = [i for i in range(pairs) if i not in kept]
    assert (mask[kept] == 1).all() and (mask[pairs + kept] == 1).all()
    assert np.array_equal(mask[dropped].numpy() / 2, g['cd_binomial'][dropped].astype(np.float32))
    # the draws themselves, in the release's order
    torch.manual_seed(int(g['cd_seed']))
    binom = torch.distributions.Binomial(probs=0.5).sample((pairs, dim))
    assert np.array_equal(binom.numpy(), g['cd_binomial'])
    assert np.array_equal(torch.randperm(pairs).numpy(), g['cd_randperm'])


def test_segmentor_draws_masks_from_the_global_generator():
    """`model(x, comp_drop=True)` draws `complementary_masks` first thing, as the release does."""
    model = build('dpt-dinov2-tiny').train()
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(5)
    drawn = model(x, comp_drop=True)
    torch.manual_seed(5)
    mask = complementary_masks(2, 64, 0.5)
    assert torch.equal(drawn, model(x, comp_drop=True, feature_masks=mask))


def test_sdpa_matches_explicit_attention(model, release):
    _, g = release
    x = torch.from_numpy(g['rect_input'])
    try:
        with torch.no_grad():
            explicit = torch.stack(model.backbone.forward_intermediates(x, output_fmt='NLC'))
            model.backbone.set_attn_impl('sdpa')
            sdpa = torch.stack(model.backbone.forward_intermediates(x, output_fmt='NLC'))
    finally:
        model.backbone.set_attn_impl('math')
    assert (sdpa - explicit).abs().max().item() < 1e-5
    tiny = build('dpt-dinov2-tiny', attn_impl='sdpa').eval()
    xt = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        a = tiny(xt)
        tiny.backbone.set_attn_impl('math')
        b = tiny(xt)
    assert (a - b).abs().max().item() < 1e-5


def _bicubic_matrix(n_in, n_out, scale):
    """PyTorch's bicubic (A = -0.75, align_corners=False) along one axis for a given scale
    factor: source x = (i + 0.5) / scale - 0.5, taps clamped to the border."""
    a = -0.75

    def near(t):
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t):
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = (i + 0.5) / scale - 0.5
        x0 = math.floor(x)
        t = x - x0
        for k, wgt in zip(range(x0 - 1, x0 + 3), (far(t + 1), near(t), near(1 - t), far(2 - t))):
            m[i, min(max(k, 0), n_in - 1)] += wgt
    return m


def test_pos_embed_interpolation_uses_the_scale_factor():
    pe = torch.randn(1, 1 + 37 * 37, 8)
    assert interpolate_pos_embed(pe, (37, 37)) is pe  # 518x518: the stored grid, unchanged
    out = interpolate_pos_embed(pe, (9, 13))         # 126x182, non-square
    assert out.shape == (1, 1 + 9 * 13, 8) and torch.equal(out[:, 0], pe[:, 0])
    grid = pe[0, 1:].reshape(37, 37, 8).double().numpy()
    rows, cols = _bicubic_matrix(37, 9, 9.1 / 37), _bicubic_matrix(37, 13, 13.1 / 37)
    ref = np.einsum('ia,jb,abc->ijc', rows, cols, grid).reshape(1, 9 * 13, 8)
    assert np.abs(out[:, 1:].numpy() - ref).max() < 1e-5
    # resizing to a size (timm, semiseg.utils.pos_embed) samples elsewhere
    by_size = resize_pos_embed(pe, (37, 37), (9, 13))
    assert (by_size - out).abs().max().item() > 1e-2


def test_model_uses_stored_grid_at_img_size_and_rejects_other_sides(monkeypatch):
    import semiseg.models.backbones.dinov2 as dinov2
    tiny = build('dpt-dinov2-tiny').backbone  # grid 8x8 for 64x64
    calls = []

    def spy(pe, hw, offset):
        out = interpolate_pos_embed(pe, hw, offset)
        calls.append((hw, out is pe))
        return out

    monkeypatch.setattr(dinov2, 'interpolate_pos_embed', spy)
    with torch.no_grad():
        tiny(torch.randn(1, 3, 64, 64))
        tiny(torch.randn(1, 3, 64, 96))
    assert calls == [((8, 8), True), ((8, 12), False)]
    with pytest.raises(ValueError, match='multiples of the patch size 8'):
        tiny(torch.randn(1, 3, 60, 64))


def test_activation_checkpointing_gives_equal_gradients():
    torch.manual_seed(0)
    plain = build('dpt-dinov2-tiny').train()
    ckpt = build('dpt-dinov2-tiny', with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 21, (2, 64, 64))
    grads = []
    for m in (plain, ckpt):
        m.zero_grad()
        F.cross_entropy(m(x), target).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name, g0 in grads[0].items():
        assert torch.allclose(g0, grads[1][name], atol=1e-7, rtol=0), name
    # unused by the forward, as in the release (DDP needs find_unused_parameters)
    assert 'backbone.mask_token' not in grads[0]
    assert not any(n.startswith('decode_head.scratch.refinenet4.resConfUnit1') for n in grads[0])


def test_tiny_config_is_a_small_dinov2():
    tiny = build('dpt-dinov2-tiny', num_classes=5)
    bb = tiny.backbone
    assert isinstance(bb, DINOv2ViT) and bb.patch_size == 8 and bb.pos_grid == 8
    assert bb.pos_embed.shape == (1, 65, 64) and bb.out_indices == [0, 1, 2, 3]
    assert tiny.decode_head.features == 16 and tiny.num_classes == 5
    assert counts(tiny)[0] < 400_000
    with torch.no_grad():
        assert tiny(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
