"""Parameter groups of build_optimizer (google-research/semivl `semivl.py` calls mmseg's
`build_optimizer`: mmcv DefaultOptimizerConstructor)."""
import pytest
import torch
from torch import nn

from semiseg.engine.optim import build_optimizer, sorted_custom_keys

CUSTOM_KEYS = {'backbone': {'lr_mult': 0.01}, 'text_encoder': {'lr_mult': 0.0},
               'conv_encoder': {'lr_mult': 0.5}, 'norm': {'decay_mult': 0.0},
               'ln': {'decay_mult': 0.0}, 'head': {'lr_mult': 10.0}}
CFG = {'optimizer': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01,
                     'paramwise_cfg': {'custom_keys': CUSTOM_KEYS}}}


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(4, 4)
        self.mlp = nn.Linear(4, 4)
        self.mlp.requires_grad_(False)  # frozen ('ftap' keeps only attn trainable)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.pos_embed = nn.Parameter(torch.zeros(1, 4))
        self.backbone.layers = nn.ModuleList([Block()])
        self.backbone.ln_post = nn.LayerNorm(4)         # 'backbone' beats 'ln'
        self.decode_head = nn.Module()
        self.decode_head.conv = nn.Conv2d(4, 4, 1)
        self.decode_head.norm = nn.GroupNorm(2, 4)      # 'head' beats 'norm'
        self.extra = nn.Module()
        self.extra.ln_1 = nn.LayerNorm(4)               # 'ln' only
        self.extra.norm1 = nn.LayerNorm(4)              # 'norm' only
        self.extra.plain = nn.Linear(4, 4)              # no key
        self.text_encoder = nn.Linear(4, 4)
        self.conv_encoder = nn.Module()
        self.conv_encoder.head = nn.Conv2d(4, 4, 1)     # 'conv_encoder' beats 'head'
        self.clip_encoder = nn.Module()
        self.clip_encoder.ln_pre = nn.LayerNorm(4)
        self.clip_encoder.requires_grad_(False)


EXPECTED = {  # name -> (lr multiplier, weight-decay multiplier)
    'backbone.pos_embed': (0.01, 1), 'backbone.layers.0.attn.weight': (0.01, 1),
    'backbone.layers.0.attn.bias': (0.01, 1),
    'backbone.layers.0.mlp.weight': (1, 1), 'backbone.layers.0.mlp.bias': (1, 1),  # frozen
    'backbone.ln_post.weight': (0.01, 1), 'backbone.ln_post.bias': (0.01, 1),
    'decode_head.conv.weight': (10, 1), 'decode_head.conv.bias': (10, 1),
    'decode_head.norm.weight': (10, 1), 'decode_head.norm.bias': (10, 1),
    'extra.ln_1.weight': (1, 0), 'extra.ln_1.bias': (1, 0),
    'extra.norm1.weight': (1, 0), 'extra.norm1.bias': (1, 0),
    'extra.plain.weight': (1, 1), 'extra.plain.bias': (1, 1),
    'text_encoder.weight': (0, 1), 'text_encoder.bias': (0, 1),
    'conv_encoder.head.weight': (0.5, 1), 'conv_encoder.head.bias': (0.5, 1),
    'clip_encoder.ln_pre.weight': (1, 1), 'clip_encoder.ln_pre.bias': (1, 1),  # frozen
}


def test_key_priority():
    assert sorted_custom_keys(CUSTOM_KEYS) == ['conv_encoder', 'text_encoder', 'backbone', 'head',
                                               'norm', 'ln']


def test_one_group_per_tensor_in_registration_order():
    net = Net()
    opt = build_optimizer(net, CFG)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults['betas'] == (0.9, 0.999) and opt.defaults['eps'] == 1e-8
    names = [n for n, _ in net.named_parameters()]
    assert names == list(EXPECTED)
    assert len(opt.param_groups) == len(names)
    params = dict(net.named_parameters())
    for name, group in zip(names, opt.param_groups):
        assert group['params'][0] is params[name]
        lr_mult, decay_mult = EXPECTED[name]
        assert group['lr'] == pytest.approx(1e-3 * lr_mult), name
        assert group['weight_decay'] == pytest.approx(0.01 * decay_mult), name
        assert group['initial_lr'] == group['lr']


def test_ddp_style_wrapper_names_have_no_module_prefix():
    net = Net()
    opt = build_optimizer(nn.DataParallel(net), CFG)
    assert opt.param_groups[0]['lr'] == pytest.approx(1e-5)  # backbone.pos_embed


def test_efficient_mode_same_update():
    torch.manual_seed(0)
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = build_optimizer(a, CFG), build_optimizer(b, CFG, efficient=True)
    trainable_hp = {EXPECTED[n] for n, p in a.named_parameters() if p.requires_grad}
    assert len(opt_b.param_groups) == len(trainable_hp)
    assert all(p.requires_grad for g in opt_b.param_groups for p in g['params'])
    x = torch.randn(2, 4)
    for net, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(3):
            opt.zero_grad()
            loss = sum((p.sum() * (i + 1)) ** 2 for i, p in enumerate(net.parameters())) + x.sum()
            loss.backward()
            opt.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-7), n


def test_original_sgd_two_groups():
    net = Net()
    opt = build_optimizer(net, {'lr': 0.01, 'lr_multi': 10.0})
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults['momentum'] == 0.9 and opt.defaults['weight_decay'] == 1e-4
    assert [g['lr'] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    n_backbone = sum(1 for n, _ in net.named_parameters() if n.startswith('backbone.'))
    assert len(opt.param_groups[0]['params']) == n_backbone
    assert [g['initial_lr'] for g in opt.param_groups] == pytest.approx([0.01, 0.1])


def test_optimizer_config_errors():
    with pytest.raises(ValueError, match="'lr_multi'"):
        build_optimizer(Net(), {})
    with pytest.raises(ValueError, match='unknown optimizer type'):
        build_optimizer(Net(), {'optimizer': {'type': 'Lion', 'lr': 1e-3}})
    with pytest.raises(ValueError, match='custom_keys'):
        build_optimizer(Net(), {'optimizer': {'type': 'AdamW', 'lr': 1e-3,
                                              'paramwise_cfg': {'bias_lr_mult': 2.0}}})


def test_exp40_groups_match_the_release_table():
    """The release's groups (google-research/semivl `semivl.py`, its `build_optimizer` call) on the real
    exp-40 model (random init): 372 per-tensor groups."""
    models = pytest.importorskip('semiseg.models')
    registry = pytest.importorskip('semiseg.experiments.registry')
    cfg = dict(registry.get_runs(40)[0])
    text = nn.functional.normalize(torch.randn(21, 512), dim=1)
    mcc_text = nn.functional.normalize(torch.randn(98, 512), dim=1)
    model = models.build_segmentor(cfg, pretrained=False, text_embedding=text,
                                   mcc_text_embedding=mcc_text)
    opt = build_optimizer(model, cfg)
    counts = {}
    for (name, p), g in zip(model.named_parameters(), opt.param_groups):
        key = (name.split('.')[0], p.requires_grad, round(g['lr'], 12), g['weight_decay'])
        counts[key] = counts.get(key, 0) + 1
    assert counts == {
        ('backbone', True, 1e-6, 0.01): 49,       # 12 x attn in/out proj weight+bias, pos_embed
        ('backbone', False, 1e-4, 0.01): 103,     # frozen by 'ftap'
        ('decode_head', True, 1e-3, 0.01): 68,    # 'head' x10, GN/LN keep full decay
        ('clip_encoder', False, 1e-4, 0.01): 152,
    }
    assert len(build_optimizer(model, cfg, efficient=True).param_groups) == 2
