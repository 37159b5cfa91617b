"""Experiments 30-32 (UniMatch), 50-53 (AllSpark), 60-63 (UniMatch V2) and 64, 66 (V2's FixMatch-EMA and
labeled-only baselines: `fixmatch.py`, `supervised.py`) against the releases' YAMLs and scripts.

Each table lists a release config value next to where our run config (what `experiments.py --exp E
--run R --dry-run` writes) or the model config holds it. Values from LiheYoung/UniMatch
`configs/*.yaml`, xmed-lab/AllSpark `configs/*_allspark.yaml`, LiheYoung/UniMatch-V2 `configs/*.yaml`;
for runs made from a yaml with a changed backbone or crop, the config the release's training log
prints: UniMatch `training-logs/Pascal-VOC-2012/U2PL-Split-Size513/ResNet-101/1_16.log` (exp 33),
UniMatch V2 `training-logs/table08-{pascal,ade20k}_unimatch_v2_*_dinov2_large.log` (exps 60/63
runs 10-14, with `model_configs['large']` of `unimatch_v2.py`). UniMatch's README Cityscapes
ResNet-50 row is cityscapes.yaml with `backbone: resnet50` (exp 31 runs 4-7).
"""
from __future__ import annotations

import pytest

from semiseg.experiments import get_runs
from semiseg.models.builder import load_model_config

# (exp, run): {release yaml key: value}
UNIMATCH = {
    (30, 0): {'dataset': 'pascal', 'nclass': 21, 'crop_size': 321, 'epochs': 80, 'batch_size': 2, 'lr': 0.001,
              'lr_multi': 10.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
              'conf_thresh': 0.95, 'backbone': 'resnet101', 'replace_stride_with_dilation': [False, False, True],
              'dilations': [6, 12, 18], 'split': '92'},
    (31, 0): {'dataset': 'cityscapes', 'nclass': 19, 'crop_size': 801, 'epochs': 240, 'batch_size': 2, 'lr': 0.005,
              'lr_multi': 1.0, 'criterion': {'name': 'OHEM', 'kwargs': {'ignore_index': 255, 'thresh': 0.7,
                                                                        'min_kept': 200000}},
              'conf_thresh': 0, 'backbone': 'resnet101', 'split': '1_16'},
    (32, 0): {'dataset': 'coco', 'nclass': 81, 'crop_size': 513, 'epochs': 30, 'batch_size': 2, 'lr': 0.004,
              'lr_multi': 10.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
              'conf_thresh': 0.95, 'backbone': 'xception', 'split': '1_512'},
    (31, 4): {'dataset': 'cityscapes', 'nclass': 19, 'crop_size': 801, 'epochs': 240, 'batch_size': 2, 'lr': 0.005,
              'lr_multi': 1.0, 'criterion': {'name': 'OHEM', 'kwargs': {'ignore_index': 255, 'thresh': 0.7,
                                                                        'min_kept': 200000}},
              'conf_thresh': 0, 'backbone': 'resnet50', 'replace_stride_with_dilation': [False, False, True],
              'dilations': [6, 12, 18], 'split': '1_16', 'ngpus': 4},
    (31, 7): {'backbone': 'resnet50', 'split': '1_2'},
    (33, 0): {'dataset': 'pascal', 'nclass': 21, 'crop_size': 513, 'epochs': 80, 'batch_size': 4, 'lr': 0.001,
              'lr_multi': 10.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
              'conf_thresh': 0.95, 'backbone': 'resnet101', 'replace_stride_with_dilation': [False, False, True],
              'dilations': [6, 12, 18], 'split': 'u2pl_1_16', 'ngpus': 2},
    (33, 2): {'split': 'u2pl_1_4', 'crop_size': 513, 'batch_size': 4, 'ngpus': 2},
}
ALLSPARK = {
    (50, 0): {'dataset': 'pascal', 'nclass': 21, 'crop_size': 513, 'epochs': 80, 'batch_size': 2, 'lr': 0.001,
              'lr_multi': 10.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
              'criterion_u': 'CELoss', 'warmup_epoch': 5, 'image_size': 513, 'num_heads': 2,
              'embedding_dim': 768, 'in_planes': [64, 128, 320, 512], 'split': '92'},
    (51, 0): {'dataset': 'pascal', 'split': '1_16', 'crop_size': 513, 'epochs': 80, 'warmup_epoch': 5},
    (52, 0): {'dataset': 'cityscapes', 'nclass': 19, 'crop_size': 801, 'epochs': 240, 'batch_size': 2, 'lr': 0.005,
              'lr_multi': 1.0, 'criterion': {'name': 'OHEM', 'kwargs': {'ignore_index': 255, 'thresh': 0.7,
                                                                        'min_kept': 200000}},
              'warmup_epoch': 15, 'image_size': 801, 'split': '1_16'},
    # the release's coco yaml has no warmup_epoch (its model cannot be built): ours sets 1
    (53, 0): {'dataset': 'coco', 'nclass': 81, 'crop_size': 513, 'epochs': 10, 'batch_size': 4, 'lr': 0.001,
              'lr_multi': 10.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}}, 'split': '1_512'},
}
UNIMATCH_V2 = {   # the yamls name dinov2_small; run 0 of each experiment is DINOv2-S, the B runs follow
    (60, 0): {'dataset': 'pascal', 'nclass': 21, 'crop_size': 518, 'epochs': 60, 'batch_size': 4, 'lr': 5e-6,
              'lr_multi': 40.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
              'conf_thresh': 0.95, 'backbone': 'dinov2_small', 'lock_backbone': False, 'split': '92'},
    (61, 0): {'dataset': 'cityscapes', 'nclass': 19, 'crop_size': 798, 'epochs': 180, 'batch_size': 2, 'lr': 5e-6,
              'lr_multi': 40.0, 'criterion': {'name': 'OHEM', 'kwargs': {'ignore_index': 255, 'thresh': 0.7,
                                                                        'min_kept': 200000}},
              'conf_thresh': 0.95, 'backbone': 'dinov2_small', 'split': '1_16'},
    (62, 0): {'dataset': 'coco', 'nclass': 81, 'crop_size': 518, 'epochs': 20, 'batch_size': 4, 'lr': 5e-6,
              'lr_multi': 40.0, 'conf_thresh': 0.95, 'backbone': 'dinov2_small', 'split': '1_512'},
    # ade20k.yaml says lock_backbone: True; the reported runs trained the encoder (their logs say False)
    (63, 0): {'dataset': 'ade20k', 'nclass': 150, 'crop_size': 518, 'epochs': 60, 'batch_size': 2, 'lr': 5e-6,
              'lr_multi': 40.0, 'conf_thresh': 0.95, 'backbone': 'dinov2_small', 'lock_backbone': False,
              'split': '1_64'},
    (60, 10): {'dataset': 'pascal', 'nclass': 21, 'crop_size': 518, 'epochs': 60, 'batch_size': 4, 'lr': 5e-6,
               'lr_multi': 40.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
               'conf_thresh': 0.95, 'backbone': 'dinov2_large', 'lock_backbone': False, 'split': '92', 'ngpus': 4,
               'features': 256, 'out_channels': [256, 512, 1024, 1024]},
    (60, 14): {'backbone': 'dinov2_large', 'split': '1464'},
    (63, 10): {'dataset': 'ade20k', 'nclass': 150, 'crop_size': 518, 'epochs': 60, 'batch_size': 2, 'lr': 5e-6,
               'lr_multi': 40.0, 'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}},
               'conf_thresh': 0.95, 'backbone': 'dinov2_large', 'lock_backbone': False, 'split': '1_64', 'ngpus': 4,
               'features': 256, 'out_channels': [256, 512, 1024, 1024]},
    (63, 14): {'backbone': 'dinov2_large', 'split': '1_4'},
}
# V2's baselines on the same yamls with `backbone: dinov2_base` (their logs: training-logs/table05-fixmatch_*,
# table0{1-4}-*_labeled_only_*): `script` is the release script, `optimizer` (type, weight decay), `ema_ratio`
# the EMA cap of the script (supervised.py keeps no EMA), `eval_mode` evaluate()'s mode, `labeled_samples` the
# length supervised.py repeats a shorter labeled list to; supervised.py doubles the yaml's batch_size
_V2_B = {'nclass': None, 'crop_size': 518, 'lr': 5e-6, 'lr_multi': 40.0, 'optimizer': ('AdamW', 0.01),
         'backbone': 'dinov2_base', 'ngpus': 4}
_V2_FME = {**_V2_B, 'script': 'fixmatch.py', 'ema_ratio': 0.996, 'conf_thresh': 0.95, 'lock_backbone': False}
_V2_SUP = {**_V2_B, 'script': 'supervised.py', 'ema_ratio': None}
_CE = {'name': 'CELoss', 'kwargs': {'ignore_index': 255}}
_OHEM = {'name': 'OHEM', 'kwargs': {'ignore_index': 255, 'thresh': 0.7, 'min_kept': 200000}}
_V2_DATA = {   # (dataset, first split): the yaml's values, evaluate()'s mode, supervised.py's labeled length
    'pascal': ({'split': '92', 'nclass': 21, 'epochs': 60, 'batch_size': 4, 'criterion': _CE,
                'eval_mode': 'original', 'eval_size_multiple': 14}, 3000),
    'cityscapes': ({'split': '1_16', 'nclass': 19, 'crop_size': 798, 'epochs': 180, 'batch_size': 2, 'criterion': _OHEM,
                    'eval_mode': 'sliding_window'}, 3000),
    'coco': ({'split': '1_512', 'nclass': 81, 'epochs': 20, 'batch_size': 4, 'criterion': _CE,
              'eval_mode': 'original', 'eval_size_multiple': 14}, 30000),
    'ade20k': ({'split': '1_64', 'nclass': 150, 'epochs': 60, 'batch_size': 2, 'criterion': _CE,
                'eval_mode': 'original', 'eval_size_multiple': 14}, 6000),
}
UNIMATCH_V2_BASELINES = {}
for _run, (_dataset, (_yaml, _labeled)) in zip((0, 5, 9, 14), _V2_DATA.items()):
    UNIMATCH_V2_BASELINES[(64, _run)] = {**_V2_FME, 'dataset': _dataset, **_yaml}
    UNIMATCH_V2_BASELINES[(66, _run)] = {**_V2_SUP, 'dataset': _dataset, **_yaml,
                                         'batch_size': 2 * _yaml['batch_size'], 'labeled_samples': _labeled}
UNIMATCH_V2_BASELINES[(64, 18)] = {'script': 'fixmatch.py', 'dataset': 'ade20k', 'split': '1_4'}
UNIMATCH_V2_BASELINES[(66, 18)] = {'script': 'supervised.py', 'dataset': 'ade20k', 'split': '1_4',
                                   'labeled_samples': 6000}
V2_SCRIPTS = {'fixmatch.py': 'fixmatch_ema', 'supervised.py': 'supervised'}
# V2's evaluate() 'sliding_window' shifts the last window back inside the image (ours: shifted_sliding_window)
V2_EVAL_MODES = {'original': 'original', 'sliding_window': 'shifted_sliding_window'}
BACKBONES = {'resnet101': ('DeepStemResNet', 101), 'resnet50': ('DeepStemResNet', 50),
             'xception': ('AlignedXception', None), 'dinov2_small': ('DINOv2ViT', 'small'),
             'dinov2_base': ('DINOv2ViT', 'base'), 'dinov2_large': ('DINOv2ViT', 'large')}


def ours(cfg: dict, key: str):
    """Where our run config (or its model config) keeps the release key `key`."""
    model = load_model_config(cfg['model'])['model']
    head, backbone = model['decode_head'], model['backbone']
    if key == 'lr':
        return cfg['optimizer']['lr'] if 'optimizer' in cfg else cfg['lr']
    if key == 'lr_multi':
        if 'optimizer' in cfg:
            return cfg['optimizer']['paramwise_cfg']['custom_keys']['decode_head']['lr_mult']
        return float(cfg['lr_multi'])
    if key == 'backbone':
        return backbone['type'], backbone.get('depth', backbone.get('arch'))
    if key == 'replace_stride_with_dilation':
        return list(backbone['replace_stride_with_dilation'])
    if key == 'dilations':
        return list(head['dilations'])
    if key == 'image_size':   # AllSpark's decoder works at the crop (semiseg.models.builder)
        return cfg['crop_size']
    if key in ('num_heads', 'embedding_dim', 'features'):
        return head[key]
    if key == 'out_channels':
        return list(head[key])
    if key == 'ngpus':
        return cfg['n_gpus']
    if key == 'in_planes':
        return head['in_channels']
    if key == 'script':
        return {method: script for script, method in V2_SCRIPTS.items()}.get(cfg['method'])
    if key == 'optimizer':
        return cfg['optimizer']['type'], cfg['optimizer']['weight_decay']
    if key == 'ema_ratio':
        return cfg.get('ema_decay')
    if key == 'eval_mode':
        return {ours: release for release, ours in V2_EVAL_MODES.items()}[cfg['eval_mode']]
    return cfg[key]


CASES = [(e, r, k, v) for table in (UNIMATCH, ALLSPARK, UNIMATCH_V2, UNIMATCH_V2_BASELINES)
         for (e, r), kv in table.items() for k, v in kv.items()]


@pytest.mark.parametrize('exp,run,key,release', CASES, ids=[f'{e}-{r}-{k}' for e, r, k, _ in CASES])
def test_release_yaml_value(exp, run, key, release):
    cfg = get_runs(exp)[run]
    got = ours(cfg, key)
    if key == 'backbone':
        release = BACKBONES[release]
        got = (got[0], got[1] if release[1] is not None else None)
    assert got == release, f'exp {exp} run {run}: release {key}={release!r}, ours {got!r}'


def test_run_order_and_names():
    assert [c['split'] for c in get_runs(50)] == ['92', '183', '366', '732', '1464']
    v2 = get_runs(60)
    assert [c['model'] for c in v2] == ['mmseg.dpt-dinov2s'] * 5 + ['mmseg.dpt-dinov2b'] * 5 + ['mmseg.dpt-dinov2l'] * 5
    assert [c['model'] for c in get_runs(63)][10:] == ['mmseg.dpt-dinov2l'] * 5
    assert [c['model'] for c in get_runs(31)] == ['mmseg.dlv3p-r101'] * 4 + ['mmseg.dlv3p-r50'] * 4
    assert v2[0]['name'] == 'voc-92-518_dpt-dinov2s_um2-095-ce-uce_adamw-5e-06-hm401x4x4-ep60_eor14'
    assert get_runs(30)[0]['name'] == 'voc-92-321_dlv3p-r101_um-095-plev-ce-uce_org-1e-03_eor'
    assert get_runs(50)[0]['name'] == 'voc-92-513_allspark-mitb5_asp-ce-uce_org-1e-03_eor'
    assert get_runs(61)[0]['eval_mode'] == 'shifted_sliding_window' and 'eval_size_multiple' not in get_runs(61)[0]
    assert [(c['dataset'], c['split']) for c in get_runs(64)] == [(c['dataset'], c['split']) for c in get_runs(66)]
    assert {c['model'] for c in get_runs(64) + get_runs(66)} == {'mmseg.dpt-dinov2b'}
    for exp in (30, 31, 32, 33, 50, 51, 52, 53, 60, 61, 62, 63, 64, 65, 66):
        names = [c['name'] for c in get_runs(exp)]
        assert len(set(names)) == len(names), exp
