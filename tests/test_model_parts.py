"""Backbone, head and builder details, checked on tiny random modules (google-research/semivl
`third_party/maskclip/models/backbones/maskclip_vit.py`, `model/vlm.py`, `model/builder.py`,
`model/decode_heads/vlg_head.py`)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _model_golden_common import REF, TEXT

from semiseg.data.class_definitions import CITYSCAPES_CONCEPTS_3, PASCAL_CONCEPTS_4
from semiseg.models.backbones.maskclip_vit import MaskClipVisionTransformer, freeze_for_spatial_finetuning
from semiseg.models.builder import UnknownModel, available_models, build_segmentor
from semiseg.models.heads.vlg_head import VLGHead
from semiseg.models.segmentors.vlm import VLMSegmentor, _renorm_imagenet_to_clip
from semiseg.models.text_embeddings import groups_from_concepts
from semiseg.utils.pos_embed import resize_pos_embed

torch.set_num_threads(1)


def vit(**kw):
    args = dict(img_size=32, patch_size=8, embed_dims=32, num_layers=3, num_heads=2, mlp_ratio=2,
                out_dims=16, out_indices=(0, 1, 3))
    args.update(kw)
    torch.manual_seed(0)
    return MaskClipVisionTransformer(**args).eval()


def test_out_indices_are_value_paths_and_dense_embedding():
    m = vit()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, glob = m(x)
        # manual reference of the v-path at layer 0 and 1
        tokens, hw = m._embed(x)
        expect = {}
        for i, layer in enumerate(m.layers):
            a = layer.ln1(tokens)
            v = F.linear(a, layer.attn.attn.in_proj_weight[64:], layer.attn.attn.in_proj_bias[64:])
            v = layer.attn.attn.out_proj(v) + tokens
            v = v + layer.ffn.layers(layer.ln2(v))
            expect[i] = v
            tokens = layer(tokens)
    assert [f.shape for f in feats] == [(2, 32, 4, 4), (2, 32, 4, 4), (2, 16, 4, 4)]
    ref0 = expect[0][:, 1:].transpose(1, 2).reshape(2, 32, 4, 4)
    assert torch.allclose(feats[0], ref0, atol=1e-5)
    ref1 = expect[1][:, 1:].transpose(1, 2).reshape(2, 32, 4, 4)
    assert torch.allclose(feats[1], ref1, atol=1e-5)
    dense = m.proj(m.ln1(expect[2])[:, 1:].transpose(1, 2).reshape(2, 32, 4, 4))
    assert torch.allclose(feats[2], F.normalize(dense, dim=1), atol=1e-5)
    assert torch.allclose(feats[2].norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    cls = F.linear(m.ln1(tokens)[:, 0], m.proj.weight.flatten(1))
    assert torch.allclose(glob, F.normalize(cls, dim=-1), atol=1e-5)


def test_guidance_encoder_default_out_indices():
    m = vit(out_indices=None)
    feats, glob = m(torch.randn(1, 3, 32, 32))
    assert len(feats) == 1 and feats[0].shape == (1, 16, 4, 4) and glob.shape == (1, 16)


def test_corner_padding_and_pos_embed_resize():
    m = vit()
    x = torch.randn(1, 3, 35, 50)  # -> padded to 40 x 56: 5 x 7 tokens
    feats, _ = m(x)
    assert feats[-1].shape[-2:] == (5, 7)
    padded = F.pad(x, (0, 6, 0, 5))
    assert torch.allclose(m(padded)[0][-1], feats[-1], atol=1e-5)
    pos = torch.randn(1, 17, 8)
    out = resize_pos_embed(pos, (4, 4), (5, 7))
    assert out.shape == (1, 36, 8) and torch.equal(out[:, 0], pos[:, 0])
    grid = pos[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, (5, 7), mode='bicubic', align_corners=False)
    assert torch.allclose(out[:, 1:], ref.flatten(2).transpose(1, 2))


def test_bad_out_indices_rejected():
    with pytest.raises(ValueError, match='out_indices'):
        vit(out_indices=(0, 7))


def test_spatial_finetuning_freeze():
    m = vit()
    n = freeze_for_spatial_finetuning(m)
    trainable = {k for k, p in m.named_parameters() if p.requires_grad}
    assert trainable == {k for k, _ in m.named_parameters() if 'attn' in k or 'pos_embed' in k}
    assert 'cls_token' not in trainable and 'proj.weight' not in trainable
    assert n == sum(p.numel() for p in m.parameters() if p.requires_grad)


def head_inputs(b=2, n=3, c=16, h=4, w=4):
    torch.manual_seed(0)
    feats = (torch.randn(b, 32, h, w), torch.randn(b, 32, h, w), torch.randn(b, c, h, w))
    return [[feats, torch.randn(b, c)], torch.randn(n, c), None]


def small_head(**kw):
    args = dict(img_size=32, num_classes=3, text_in_channels=16, text_channels=8,
                up_channels=(16, 16), skip_in_channels=(32, 32), skip_channels=(8, 4),
                num_layers=2, num_heads=2, channels=16, pool_size=2, conv1_ksize=3,
                aspp_rates=(1, 2))
    args.update(kw)
    torch.manual_seed(0)
    return VLGHead(**args).eval()


def test_vlg_head_output_and_square_resize():
    head = small_head()
    x = head_inputs()
    raw = head(x)
    assert raw.shape == (2, 3, 16, 16)  # two x2 upsampling stages
    out = head(x, force_output_pred_masks=True)['pred_masks']
    assert out.shape == (2, 3, 32, 32)
    # non-square features still give the square img_size (the release quirk)
    assert head(head_inputs(h=4, w=6), True)['pred_masks'].shape == (2, 3, 32, 32)


def test_vlg_head_is_per_class_equivariant():
    """Permuting the text rows permutes the class maps (attention across classes is symmetric)."""
    head = small_head()
    x = head_inputs()
    perm = torch.tensor([2, 0, 1])
    out = head(x)
    x[1] = x[1][perm]
    assert torch.allclose(head(x), out[:, perm], atol=1e-5)


def test_vlg_head_rejects_wrong_text():
    head = small_head()
    x = head_inputs(n=4)
    with pytest.raises(ValueError, match='text embedding shape'):
        head(x)


def test_vlg_head_pooling_floors():
    head = small_head(pool_size=2)
    x = head_inputs(h=5, w=5)  # pooled 5 -> 2, upsampled back to 5
    assert head(x).shape == (2, 3, 20, 20)


def test_renorm_clip_img_maps_imagenet_to_clip():
    rgb = torch.rand(1, 3, 4, 4)
    inet = (rgb - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    clip = (rgb - torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)) / \
        torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    assert torch.allclose(_renorm_imagenet_to_clip(inet), clip, atol=1e-5)


def tiny_cfg(**kw):
    from semiseg.experiments.registry import get_runs
    return {**get_runs(0)[2], **kw}


def test_concept_max_aggregation_in_guidance():
    torch.manual_seed(0)
    mcc = F.normalize(torch.randn(8, 512), dim=-1)
    groups = [[0, 1, 2], [3], [4, 5], [6], [7]]
    cfg = tiny_cfg(model_args={'maskclip_class_filter': None, 'mcc_concept_groups': groups})
    m = build_segmentor(cfg, pretrained=False, text_embedding=torch.randn(5, 512),
                        mcc_text_embedding=mcc)
    assert m.mcc_concept_groups == groups
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        emb = m.clip_encoder(x)[0][0]
        cos = torch.einsum('bchw,kc->bkhw', emb, mcc)
        expect = torch.stack([cos[:, g].amax(1) for g in groups], 1)
        assert torch.allclose(m.guidance_logits(x), expect, atol=1e-5)
        up = F.interpolate(expect, (64, 64), mode='bilinear', align_corners=False)
        conf, label = (100 * up).softmax(1).max(1)
        label[conf < 0.6] = 255
        assert torch.equal(m.guidance_labels(x, 0.6), label)


def test_concept_rows_without_groups_is_an_error():
    cfg = tiny_cfg()
    with pytest.raises(ValueError, match='mcc_concept_groups|grouping'):
        build_segmentor(cfg, pretrained=False, text_embedding=torch.randn(5, 512),
                        mcc_text_embedding=torch.randn(8, 512))


def test_text_rows_must_match_classes():
    with pytest.raises(ValueError, match='text_embedding has 4 rows'):
        build_segmentor(tiny_cfg(), pretrained=False, text_embedding=torch.randn(4, 512),
                        mcc_text_embedding=torch.randn(5, 512))


def test_unknown_model_lists_available():
    assert 'vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb' in available_models()
    with pytest.raises(UnknownModel, match='Available: .*mmseg.vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb'):
        build_segmentor(tiny_cfg(model='mmseg.does-not-exist'), pretrained=False,
                        text_embedding=torch.randn(5, 512))


def test_crop_size_sets_img_size():
    m = build_segmentor(tiny_cfg(crop_size=48, clip_encoder=None), pretrained=False,
                        text_embedding=torch.randn(5, 512))
    assert m.backbone.img_size == (48, 48) and m.decode_head.img_size == 48
    assert m.backbone.pos_embed.shape[1] == 6 * 6 + 1
    assert m(torch.randn(1, 3, 48, 48)).shape == (1, 5, 48, 48)


VOC_CONCEPT4_GROUPS = groups_from_concepts(PASCAL_CONCEPTS_4)
CITYSCAPES_CONCEPT3_GROUPS = groups_from_concepts(CITYSCAPES_CONCEPTS_3)


def test_segmentor_is_registered():
    from mmseg.registry import MODELS
    assert MODELS.get('VLMSegmentor') is VLMSegmentor
    assert MODELS.get('VLGHead') is VLGHead
    assert MODELS.get('MaskClipVisionTransformer') is MaskClipVisionTransformer


def test_concept_groups_match_release_conceptavg_files():
    """conceptavg rows are the renormalised means of each class's concept rows."""
    assert sum(map(len, VOC_CONCEPT4_GROUPS)) == 98 and len(VOC_CONCEPT4_GROUPS) == 21
    assert sum(map(len, CITYSCAPES_CONCEPT3_GROUPS)) == 54 and len(CITYSCAPES_CONCEPT3_GROUPS) == 19
    assert groups_from_concepts([['a', 'b'], ['c']]) == [[0, 1], [2]]
    for concept, avg, groups in (('voc12_wbg_concept4_single', 'voc12_wbg_conceptavg4_single',
                                  VOC_CONCEPT4_GROUPS),
                                 ('cityscapes_concept3_single', 'cityscapes_conceptavg3_single',
                                  CITYSCAPES_CONCEPT3_GROUPS)):
        if not (TEXT / f'{concept}.npy').exists():
            pytest.skip(f'reference data missing under {REF}')
        rows = torch.from_numpy(np.load(TEXT / f'{concept}.npy')).float()
        ref = torch.from_numpy(np.load(TEXT / f'{avg}.npy')).float()
        means = F.normalize(torch.stack([rows[g].mean(0) for g in groups]), dim=-1)
        sims = means @ ref.T
        assert torch.equal(sims.argmax(1), torch.arange(len(groups)))
        assert sims.diagonal().min() > 0.999


def test_vlg_head_pools_maps_smaller_than_the_kernel():
    head = small_head(pool_size=2)
    assert head(head_inputs(h=1, w=5)).shape == (2, 3, 4, 20)


def fake_openai_visual(width=32, layers=3, patch=8, grid=3, out=16):
    """An OpenAI-layout CLIP visual state dict with tiny shapes."""
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(*shape, generator=g)
    sd = {'visual.class_embedding': r(width), 'visual.positional_embedding': r(grid * grid + 1, width),
          'visual.conv1.weight': r(width, 3, patch, patch), 'visual.proj': r(width, out),
          'visual.ln_pre.weight': r(width), 'visual.ln_pre.bias': r(width),
          'visual.ln_post.weight': r(width), 'visual.ln_post.bias': r(width)}
    for i in range(layers):
        p = f'visual.transformer.resblocks.{i}.'
        sd.update({p + 'ln_1.weight': r(width), p + 'ln_1.bias': r(width),
                   p + 'attn.in_proj_weight': r(3 * width, width), p + 'attn.in_proj_bias': r(3 * width),
                   p + 'attn.out_proj.weight': r(width, width), p + 'attn.out_proj.bias': r(width),
                   p + 'ln_2.weight': r(width), p + 'ln_2.bias': r(width),
                   p + 'mlp.c_fc.weight': r(2 * width, width), p + 'mlp.c_fc.bias': r(2 * width),
                   p + 'mlp.c_proj.weight': r(width, 2 * width), p + 'mlp.c_proj.bias': r(width)})
    return sd


def test_pretrained_backbone_loads_clip_weights(tmp_path):
    """init_weights() hands `pretrained` to semiseg.models.weights (the conversion of
    google-research/semivl `third_party/maskclip/convert_clip_weights.py`)."""
    sd = fake_openai_visual()
    torch.save(sd, tmp_path / 'clip.pt')
    m = vit(pretrained=str(tmp_path / 'clip.pt'))
    m.init_weights()
    assert torch.equal(m.cls_token.flatten(), sd['visual.class_embedding'])
    assert torch.equal(m.proj.weight[:, :, 0, 0], sd['visual.proj'].t())
    assert torch.equal(m.layers[2].ffn.layers[1].weight,
                       sd['visual.transformer.resblocks.2.mlp.c_proj.weight'])
    pos = sd['visual.positional_embedding'][None]
    assert torch.allclose(m.pos_embed, resize_pos_embed(pos, (3, 3), (4, 4)), atol=1e-5)


def test_pos_embed_grid_floors_like_mmseg():
    """801 -> 50x50 stored (2501 rows); an 801 input is padded to 51x51 tokens (the runtime
    pos-embed resize of the release's `MaskClipVisionTransformer`)."""
    m = vit(img_size=35)  # patch 8: 4x4 stored, 35 -> padded 40 -> 5x5 tokens
    assert m.pos_embed.shape[1] == 17
    assert m(torch.randn(1, 3, 35, 35))[0][-1].shape[-2:] == (5, 5)
    big = MaskClipVisionTransformer(img_size=801, embed_dims=8, num_layers=1, num_heads=1,
                                    out_dims=4, out_indices=None)
    assert big.pos_embed.shape == (1, 2501, 8)


def test_mcc_fix_resize_pos_sets_clip_encoder_size():
    m = build_segmentor(tiny_cfg(crop_size=48, mcc_fix_resize_pos=True), pretrained=False,
                        text_embedding=torch.randn(5, 512), mcc_text_embedding=torch.randn(5, 512))
    assert m.clip_encoder.img_size == (48, 48)
    m = build_segmentor(tiny_cfg(crop_size=48), pretrained=False,
                        text_embedding=torch.randn(5, 512), mcc_text_embedding=torch.randn(5, 512))
    assert m.clip_encoder.img_size == (64, 64)
