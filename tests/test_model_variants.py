"""Exp-41 ablation models and the exp-44 skr04 model: build from their configs, forward shapes,
parameter freezing (ftap / ft / pt), tiny-width variants, and the ZegCLIP loss."""
import copy
from pathlib import Path

import pytest
import torch

from semiseg.models.builder import build_segmentor, load_model_config

torch.set_num_threads(1)  # the CPU is shared; one thread is as fast here
REF = Path(__file__).resolve().parents[1].parent / 'shared' / 'reference'
ATTN_POS_TRAINABLE = 29_135_616  # ftap freeze: google-research/semivl `model/vlm.py`, `VLM.__init__`
PROMPT_TRAINABLE = 10 * 768 + 11 * 10 * 768 + 768 * 768 + 768 + 2 * 768


def run_cfg(model, nclass=21, crop=512, dataset='pascal', **kw):
    cfg = {'dataset': dataset, 'nclass': nclass, 'crop_size': crop, 'model': model,
           'model_args': {'maskclip_class_filter': None}, 'clip_encoder': None,
           'disable_dropout': True, 'fp_rate': 0.5}
    cfg.update(kw)
    return cfg


def trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def total(module):
    return sum(p.numel() for p in module.parameters())


def text(n, d=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1).half().float()


@pytest.fixture(scope='module')
def dlv3p_ftap():
    return build_segmentor(run_cfg('mmseg.vlm-dlv3p-bn12-sk4-ftap-mcvitb'), pretrained=False,
                           text_embedding=text(21))


def test_dlv3p_mcvitb_ftap_freezing_and_forward(dlv3p_ftap):
    m = dlv3p_ftap
    assert trainable(m.backbone) == ATTN_POS_TRAINABLE
    assert trainable(m.decode_head) == total(m.decode_head)
    assert m.decode_head.aspp.out_channels == 64 and m.decode_head.head[0].in_channels == 112
    m.eval()
    with torch.no_grad():
        feats = m.extract_feat(torch.randn(1, 3, 32, 48))
        head_out = m.decode_head(feats, force_output_pred_masks=True)
        assert head_out['pred_masks'].shape == (1, 21, 512, 512)  # square img_size (release quirk)
        out = m(torch.randn(1, 3, 32, 48))
    assert out.shape == (1, 21, 32, 48) and torch.isfinite(out).all()


def tiny_build(name, nclass=5, backbone=None, head=None):
    """A config's model with tiny widths (same types, same structure)."""
    from mmseg.registry import MODELS
    cfg = copy.deepcopy(load_model_config(name)['model'])
    cfg['backbone'].update(backbone or {})
    cfg['decode_head'].update(dict(num_classes=nclass, **(head or {})))
    cfg['text_embedding'] = text(nclass)
    cfg['disable_dropout'] = True
    return MODELS.build(cfg)


TINY_MCVIT = dict(img_size=(64, 64), embed_dims=64, num_heads=2)


def test_dlv3p_tiny_backward_and_fp():
    for name, frozen in (('mmseg.vlm-dlv3p-bn12-sk4-ft-mcvitb', False),
                         ('mmseg.vlm-dlv3p-bn12-sk4-ftap-mcvitb', True)):
        m = tiny_build(name, backbone=TINY_MCVIT, head=dict(img_size=32, c1_in_channels=64))
        assert (trainable(m) == total(m)) != frozen
        m.train()
        logits, logits_fp = m(torch.randn(2, 3, 32, 32), need_fp=True)
        assert logits.shape == logits_fp.shape == (2, 5, 32, 32)
        (logits.mean() + logits_fp.mean()).backward()
        ffn_grad = m.backbone.layers[0].ffn.layers[1].weight.grad
        assert (ffn_grad is None) == frozen
        assert m.backbone.layers[0].attn.attn.in_proj_weight.grad is not None
        assert m.decode_head.head[6].weight.grad is not None


def test_tvit_dlv3p_tiny_forward_and_eval_resize():
    cfg = load_model_config('mmseg.vlm-dlv3p-bn11-sk4-ft-tvit-in1k')['model']
    assert cfg['backbone']['pretrained'] is True and cfg['backbone']['out_indices'] == [4, 11]
    from mmseg.registry import MODELS
    cfg = copy.deepcopy(cfg)
    cfg['backbone'].update(img_size=64, embed_dim=32, depth=12, num_heads=2, pretrained=None)
    cfg['decode_head'].update(img_size=64, num_classes=5, c1_in_channels=32, c4_in_channels=32,
                              channels=32)
    cfg['text_embedding'] = text(5)
    m = MODELS.build(cfg)
    assert trainable(m) == total(m)
    assert 'backbone.m.blocks.11.attn.qkv.weight' in m.state_dict()  # release key layout
    feats, cls = m.backbone(torch.randn(2, 3, 64, 64))
    assert [f.shape for f in feats] == [(2, 32, 4, 4)] * 2 and cls.shape == (2, 32)
    m.train()
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 5, 64, 64)
    m.eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 40, 56)).shape == (1, 5, 40, 56)  # resized to 64 inside


def test_tvit_config_head_widths():
    from mmseg.registry import MODELS
    head = MODELS.build(load_model_config('mmseg.vlm-dlv3p-bn11-sk4-ft-tvit-in1k')['model']['decode_head'])
    assert head.aspp.out_channels == 96 and head.head[0].in_channels == 144


def test_zegclip_prompt_tuning_and_forward():
    m = build_segmentor(run_cfg('mmseg.vlm-zegclip-rd-pt-vitb'), pretrained=False,
                        text_embedding=text(21))
    assert trainable(m.backbone) == PROMPT_TRAINABLE
    assert all('prompt' in n for n, p in m.backbone.named_parameters() if p.requires_grad)
    used = sum(p.numel() for n, p in m.decode_head.named_parameters()
               if 'self_attn' not in n and 'norm1' not in n)
    assert trainable(m.decode_head) == used  # the release's unused self-attention stays frozen
    assert m.decode_head.loss_decode.num_classes == 21


def test_zegclip_tiny_loss_backward_reaches_prompts_only():
    m = tiny_build('mmseg.vlm-zegclip-rd-pt-vitb', nclass=5,
                   backbone=dict(input_resolution=64, width=64, prompt_dim=64),
                   head=dict(img_size=64))
    m.train()
    logits = m(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5, 64, 64)
    label = torch.randint(0, 5, (2, 64, 64))
    label[:, :8] = 255
    m.decode_head.loss_decode(logits, label).backward()
    assert m.backbone.deep_prompt_embeddings.grad is not None
    assert m.backbone.prompt_proj.weight.grad is not None
    assert m.backbone.conv1.weight.grad is None and m.backbone.proj.grad is None
    assert m.decode_head.q_proj.weight.grad is not None
    # disable_dropout switched the zegclip DropPath modules off during the forward
    assert not m.backbone.transformer.resblocks[11].drop_path.training


def test_vpt_loads_openai_weights(tmp_path):
    from semiseg.models.backbones.vpt_clip import VPTCLIPVisionTransformer

    src = VPTCLIPVisionTransformer(input_resolution=224, width=64, layers=3, output_dim=32,
                                   prompt_dim=64, total_d_layer=2, num_tokens=2)
    sd = {f'visual.{k}': v.half() for k, v in src.state_dict().items() if 'prompt' not in k}
    sd['text_projection'] = torch.zeros(4, 4)
    torch.save(sd, tmp_path / 'clip.pt')
    dst = VPTCLIPVisionTransformer(input_resolution=64, width=64, layers=3, output_dim=32,
                                   prompt_dim=64, total_d_layer=2, num_tokens=2,
                                   pretrained=str(tmp_path / 'clip.pt'))
    dst.init_weights()
    assert torch.equal(dst.proj.data, src.proj.data.half().float())
    assert dst.positional_embedding.shape == (17, 64)
    assert torch.equal(dst.positional_embedding.data[0], src.positional_embedding.data[0].half().float())
    feats, glob = dst(torch.randn(2, 3, 64, 64))
    assert feats[0].shape == (2, 32, 4, 4)
    torch.testing.assert_close(feats[0].norm(dim=1), torch.ones(2, 4, 4))


def _naive_segloss(pred, label, n):
    """Per (image, class) loops, straight from the description of the release's loss
    (google-research/semivl `third_party/zegclip/losses/atm_loss.py`, `SegLossPlus`)."""
    import torch.nn.functional as F
    focal, dice, num = 0.0, 0.0, 0
    for b in range(pred.shape[0]):
        present = [c for c in label[b].unique().tolist() if c != 255]
        num += len(present)
        for c in range(n):
            t = (label[b] == c).float().flatten()
            p = pred[b, c].flatten()
            prob = p.sigmoid()
            ce = F.binary_cross_entropy_with_logits(p, t, reduction='none')
            p_t = prob * t + (1 - prob) * (1 - t)
            a_t = 0.25 * t + 0.75 * (1 - t)
            focal += (a_t * ce * (1 - p_t) ** 2).mean()
            if c in present:
                dice += 1 - (2 * (prob * t).sum() + 1) / (prob.sum() + t.sum() + 1)
    num = max(num, 1)
    return 20 * focal / num + dice / num


def test_segloss_plus_matches_naive_definition():
    from semiseg.models.losses import SegLossPlus

    torch.manual_seed(0)
    pred = torch.randn(2, 4, 8, 8)
    label = torch.randint(0, 3, (2, 8, 8))
    label[0, :2] = 255
    label[1] = 255  # an image without any valid pixel adds no dice term
    loss = SegLossPlus(num_classes=4)(pred, label)
    torch.testing.assert_close(loss, _naive_segloss(pred, label, 4))
    # prediction at another size is resized to the label
    big = SegLossPlus()(torch.nn.functional.interpolate(pred, size=(16, 16)), label)
    assert torch.isfinite(big)


def test_skr04_builds_with_frozen_vit_and_trainable_resnet():
    m = build_segmentor(run_cfg('mmseg.vlm-vlg-aspp-s2p4-skr04-ftap-mcvitb', nclass=19,
                                dataset='cityscapes'), pretrained=False, text_embedding=text(19))
    assert trainable(m.backbone) == ATTN_POS_TRAINABLE
    assert m.conv_encoder is not None and trainable(m.conv_encoder) == total(m.conv_encoder)
    assert [n for n, _ in m.named_children() if n != 'data_preprocessor'][:3] == \
        ['backbone', 'decode_head', 'conv_encoder']
    assert 'conv_encoder.stem.0.weight' in m.state_dict()
    assert 'conv_encoder.layer1.2.conv3.weight' in m.state_dict()
    assert not any(k.startswith('conv_encoder.layer2') for k in m.state_dict())
    m.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        conv = m.conv_encoder(x)
        assert [c.shape for c in conv] == [(1, 256, 16, 16)]  # stride 4
        assert m(x).shape == (1, 19, 64, 64)


def test_exp44_model_with_release_text_and_guidance(monkeypatch):
    te = REF / 'text_embedding'
    cfg_f = REF / 'semivl_configs' / 'exp-44_run-1.yaml'
    if not (te.is_dir() and cfg_f.is_file()):
        pytest.skip('reference text embeddings / configs not available')
    import yaml

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor('tag:yaml.org,2002:python/tuple',
                           lambda loader, node: loader.construct_sequence(node))
    cfg = yaml.load(cfg_f.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    cfg['data_root'] = '/nonexistent'
    monkeypatch.setenv('SEMISEG_TEXT_EMBEDDINGS', str(te))
    m = build_segmentor(cfg, pretrained=False)
    assert m.text_embedding.shape == (19, 512) and m.mcc_text_embedding.shape == (54, 512)
    assert [len(g) for g in m.mcc_concept_groups][:3] == [3, 1, 7]
    m.eval()
    with torch.no_grad():
        labels = m.guidance_labels(torch.randn(1, 3, 64, 64), 0.9)
        assert labels.shape == (1, 64, 64)
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 19, 64, 64)


def test_vpt_prompts_change_output_and_late_layers_drop_them():
    from semiseg.models.backbones.vpt_clip import VPTCLIPVisionTransformer

    torch.manual_seed(0)
    m = VPTCLIPVisionTransformer(input_resolution=32, width=64, layers=4, output_dim=16,
                                 prompt_dim=64, total_d_layer=2, num_tokens=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = m(x)[0][0].clone()
        m.deep_prompt_embeddings.add_(1.0)
        after = m(x)[0][0]
    assert before.shape == (1, 16, 2, 2) and not torch.allclose(before, after)


def test_dlv3p_head_keys_follow_release():
    from semiseg.models.heads.dlv3p_head import DLV3PHead

    head = DLV3PHead(img_size=32, num_classes=3, c1_in_channels=16, c4_in_channels=64)
    keys = set(head.state_dict())
    for k in ('aspp.b0.0.weight', 'aspp.b3.1.running_mean', 'aspp.b4.gap.1.weight',
              'aspp.project.0.weight', 'c1_proj.0.weight', 'head.0.weight', 'head.4.weight',
              'head.6.bias'):
        assert k in keys, k
    out = head([[(torch.randn(2, 16, 8, 8), torch.randn(2, 64, 4, 4)), None], None, None])
    assert out.shape == (2, 3, 32, 32)


def test_atm_head_keys_and_unused_parts_frozen():
    from semiseg.models.heads.atm_head import ATMSingleHeadSeg

    head = ATMSingleHeadSeg(img_size=16, num_classes=3, in_channels=32, channels=32,
                            embed_dims=32, num_heads=4)
    keys = set(head.state_dict())
    for k in ('q_proj.weight', 'decoder_1.layers.2.multihead_attn.q.weight',
              'decoder_1.layers.0.self_attn.in_proj_weight', 'decoder_1.layers.1.norm3.bias',
              'decoder_1.layers.0.linear1.weight'):
        assert k in keys, k
    frozen = {n for n, p in head.named_parameters() if not p.requires_grad}
    assert frozen and all('self_attn' in n or 'norm1' in n for n in frozen)
    feats = torch.nn.functional.normalize(torch.randn(2, 32, 4, 4), dim=1)
    cls = torch.nn.functional.normalize(torch.randn(2, 32), dim=-1)
    out = head([[(feats,), cls], text(3, 32), None], force_output_pred_masks=True)['pred_masks']
    assert out.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match='rows for 3 classes'):
        head([[(feats,), cls], text(5, 32), None])


def test_timm_backbone_loads_local_checkpoint_with_pos_resample(tmp_path):
    import timm

    from semiseg.models.backbones.timm_vit import TIMMVisionTransformer

    src = timm.create_model('vit_base_patch16_224', pretrained=False, embed_dim=32, depth=12,
                            num_heads=2)
    torch.save(src.state_dict(), tmp_path / 'vit.pth')
    dst = TIMMVisionTransformer(img_size=64, embed_dim=32, depth=12, num_heads=2,
                                pretrained=str(tmp_path / 'vit.pth'))
    dst.init_weights()
    assert dst.m.pos_embed.shape == (1, 17, 32)
    assert torch.equal(dst.m.blocks[5].mlp.fc1.weight, src.blocks[5].mlp.fc1.weight)
    assert torch.equal(dst.m.pos_embed[:, 0], src.pos_embed[:, 0])
