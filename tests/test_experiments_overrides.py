"""`--run` specs and `--cfg-options` overrides."""
import copy

import pytest

from semiseg.experiments import get_runs, with_overrides
from semiseg.experiments.overrides import (
    OverrideError,
    apply_overrides,
    overrides_from_mapping,
    parse_cfg_options,
    parse_value,
)
from semiseg.experiments.selection import RunSpecError, parse_run_spec


@pytest.mark.parametrize('spec,expected', [
    ('0', [0]), ('4', [4]), ('all', [0, 1, 2, 3, 4]), ('1-3', [1, 2, 3]), ('0,2', [0, 2]),
    ('0,2-4', [0, 2, 3, 4]), ('3,1', [3, 1]), ('1,1,0-1', [1, 0]), (' 2 ', [2]), ('2-2', [2]),
])
def test_run_spec(spec, expected):
    assert parse_run_spec(spec, 5) == expected


@pytest.mark.parametrize('spec,message', [
    ('5', 'run 5 out of range: experiment 40 has 5 runs'),
    ('0-9', 'run 5 out of range'),
    ('x', 'malformed run spec'), ('', 'empty run spec'), ('1,', 'malformed'), ('-1', 'malformed'),
    ('3-1', 'runs backwards'), ('all,1', 'malformed'), ('1.5', 'malformed'),
])
def test_run_spec_errors(spec, message):
    with pytest.raises(RunSpecError, match=message):
        parse_run_spec(spec, 5, exp_id=40)


@pytest.mark.parametrize('text,value', [
    ('2', 2), ('1e-3', 1e-3), ('-5E2', -500.0), ('0.5', 0.5), ('true', True), ('null', None),
    ('bf16', 'bf16'), ('[0.1, 0]', [0.1, 0]), ('[1e-3, 2]', [1e-3, 2]), ("'12'", '12'),
])
def test_parse_value(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_apply_overrides_nested_and_engine_options():
    cfg = get_runs(40)[0]
    out, _ = apply_overrides(cfg, parse_cfg_options([
        'epochs=2', 'optimizer.lr=1e-3', 'optimizer.paramwise_cfg.custom_keys.head.lr_mult=5',
        'seed=3', 'precision=bf16', 'maskclip_consistency_lambda=0.2', 'img_scale=null']))
    assert out['epochs'] == 2 and out['optimizer']['lr'] == 1e-3
    assert out['optimizer']['paramwise_cfg']['custom_keys']['head'] == {'lr_mult': 5}
    assert out['seed'] == 3 and out['precision'] == 'bf16' and out['img_scale'] is None
    assert list(out)[-2:] == ['seed', 'precision']  # engine options are appended
    assert cfg['epochs'] == 80 and cfg['optimizer']['lr'] == 1e-4 and 'seed' not in cfg  # untouched


def test_engine_option_already_in_config_is_replaced_in_place():
    cfg = get_runs(0)[0]
    out, _ = apply_overrides(cfg, parse_cfg_options(['num_workers=2']))
    assert out['num_workers'] == 2 and list(out) == list(cfg)
    out, changed = apply_overrides(cfg, parse_cfg_options(['num_workers=auto']))   # an int or 'auto'
    assert out['num_workers'] == 'auto' and changed == {'num_workers': 'auto'}
    with pytest.raises(OverrideError, match='num_workers expects an integer'):
        apply_overrides(cfg, parse_cfg_options(['num_workers=many']))


@pytest.mark.parametrize('items,message', [
    (['epochs'], 'malformed --cfg-options item'),
    (['=3'], 'malformed'), (['optimizer..lr=1'], 'malformed'),
    (['x=[1'], 'cannot parse value'),
    (['optimizer={lr: 1}'], 'is a mapping'),
])
def test_malformed_items(items, message):
    with pytest.raises(OverrideError, match=message):
        parse_cfg_options(items)


@pytest.mark.parametrize('item,message', [
    ('lrr=1', "unknown config key 'lrr'; valid keys in the config or the engine options: dataset"),
    ('optimizer.lrr=1', "valid keys under 'optimizer': type, lr, weight_decay, paramwise_cfg"),
    ('optimizer.lr.x=1', 'optimizer.lr is not a mapping'),
    ('epochs=abc', 'epochs expects an integer'),
    ('epochs=2.5', 'epochs expects an integer'),
    ('use_fp=1', 'use_fp expects true or false'),
    ('precision=true', 'precision expects a string'),
    ('optimizer.lr=fast', 'optimizer.lr expects a number'),
])
def test_unknown_or_mistyped_keys(item, message):
    with pytest.raises(OverrideError, match=message.replace('(', r'\(').replace(')', r'\)')):
        apply_overrides(get_runs(40)[0], parse_cfg_options([item]))


@pytest.mark.parametrize('item,value', [
    ('split=8', '8'), ("split='8'", '8'), ('split=1_16', '1_16'), ('epochs=2.0', 2),
    ('optimizer.lr=1e-3', 1e-3), ('optimizer.lr=1', 1.0), ('conf_thresh=1', 1.0),
])
def test_values_are_coerced_to_the_type_of_the_key(item, value):
    out, changed = apply_overrides(get_runs(40)[0], parse_cfg_options([item]))
    key = item.split('=')[0]
    node = out
    for part in key.split('.'):
        node = node[part]
    assert node == value and type(node) is type(value) and changed == {key: value}


def test_overrides_rename_the_run():
    base = get_runs(0)[1]
    split = with_overrides(base, parse_cfg_options(['split=8']))
    assert split['name'] == base['name'].replace('toy-16-', 'toy-8-')
    assert with_overrides(base, parse_cfg_options(["split='8'"])) == split
    # a key the name cannot show exactly gets a stable hash suffix; runtime options do not
    lr = with_overrides(base, parse_cfg_options(['optimizer.lr=2e-3']))
    lr2 = with_overrides(base, parse_cfg_options(['optimizer.lr=3e-3']))
    assert lr['name'] != lr2['name'] and lr['name'].startswith(base['name'].replace('1e-03', '2e-03') + '_h')
    assert with_overrides(base, parse_cfg_options(['optimizer.lr=2e-3']))['name'] == lr['name']
    assert with_overrides(base, parse_cfg_options(['num_workers=1', 'device=cpu']))['name'] == base['name']
    assert with_overrides(base, parse_cfg_options(['seed=1']))['name'] != base['name']


def test_custom_dataset_takes_its_class_count_from_classes_txt(tmp_path):
    (tmp_path / 'classes.txt').write_text('a\nb\nc\n')
    cfg = with_overrides(get_runs(0)[1], parse_cfg_options(['dataset=mine', f'data_root={tmp_path}', 'split=8']))
    assert cfg['nclass'] == 3 and cfg['data_root'] == f'{tmp_path}/' and cfg['name'].startswith('mine-8-64_')
    with pytest.raises(ValueError, match='classes.txt'):
        with_overrides(get_runs(0)[1], parse_cfg_options(['dataset=mine', f'data_root={tmp_path}/none']))


@pytest.mark.parametrize('item,message', [
    ('epochs=0', 'epochs must be a whole number >= 1'), ('batch_size=0', 'batch_size must be'),
    ('optimizer.lr=-1', 'learning rate must be a number > 0'), ('precision=fp16', 'precision must be one of'),
    ('device=tpu', 'device must be one of'), ('conf_thresh=2', 'conf_thresh must be in'),
])
def test_out_of_range_values_are_refused(item, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(get_runs(0)[1], parse_cfg_options([item]))


def test_a_changed_gpu_count_changes_the_global_batch_visibly():
    from semiseg.experiments import with_world
    cfg = get_runs(40)[0]                                     # 4 GPUs x 2 images
    same, warning = with_world(cfg, 4, None)
    assert same is cfg and warning is None
    two, warning = with_world(cfg, 2, None)
    assert two['n_gpus'] == 2 and two['global_batch'] == {'configured': 8, 'actual': 4}
    assert '_1x2x2_' in two['name'] and two['optimizer']['lr'] == cfg['optimizer']['lr']
    assert 'global batch' in warning and 'is 4 images instead of 8' in warning and 'scale_lr=linear' in warning
    scaled, warning = with_world(with_overrides(cfg, parse_cfg_options(['scale_lr=linear'])), 2, None)
    assert scaled['optimizer']['lr'] == pytest.approx(cfg['optimizer']['lr'] / 2)
    assert 'scaled linearly' in warning and scaled['name'] != two['name']
    org, _ = with_world(with_overrides(get_runs(30)[0], parse_cfg_options(['scale_lr=linear'])), 8, None)
    assert org['lr'] == pytest.approx(2e-3)                   # the SGD style too


def test_linearly_scaled_lr_reaches_the_optimizer():
    import torch

    from semiseg.engine.optim import build_optimizer
    from semiseg.experiments import with_world
    cfg, _ = with_world(with_overrides(get_runs(30)[0], parse_cfg_options(['scale_lr=linear'])), 2, None)
    model = torch.nn.Module()
    model.backbone, model.decode_head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    lrs = sorted(g['lr'] for g in build_optimizer(model, cfg).param_groups)
    assert lrs == [pytest.approx(5e-4), pytest.approx(5e-3)]   # 1e-3 x 4/8, and x lr_multi 10


def test_model_args_take_new_nested_settings():
    cfg = with_overrides(get_runs(50)[0], parse_cfg_options(['model_args.decode_head.release_eval_batch_keys=true',
                                                             'model_args.backbone.drop_path_rate=0']))
    assert cfg['model_args'] == {'decode_head': {'release_eval_batch_keys': True}, 'backbone': {'drop_path_rate': 0}}
    assert cfg['name'] != get_runs(50)[0]['name']                 # a hash suffix: the run differs
    with pytest.raises(OverrideError, match="unknown config key 'modl_args.x'"):
        apply_overrides(get_runs(50)[0], parse_cfg_options(['modl_args.x=1']))


def test_apply_overrides_leaves_the_input_whole_and_copies_only_touched_mappings():
    cfg = get_runs(40)[0]
    before = copy.deepcopy(cfg)
    out, _ = apply_overrides(cfg, parse_cfg_options(['optimizer.lr=1e-3', 'model_args.backbone.drop_path_rate=0',
                                                     'optimizer.paramwise_cfg.custom_keys.head.lr_mult=5']))
    assert cfg == before                                       # nested keys were written into copies
    assert out['optimizer'] is not cfg['optimizer'] and out['model_args'] is not cfg['model_args']
    untouched = [k for k, v in cfg.items() if isinstance(v, dict) and k not in ('optimizer', 'model_args')]
    assert untouched and all(out[k] is cfg[k] for k in untouched)   # shared, not deep-copied per run


def test_mapping_overrides_keep_the_yaml_text_of_each_value():
    ovs = overrides_from_mapping({'optimizer': {'lr': 1e-06}, 'a': -0.0, 'b': 0.0, 'c': [1, 2.5], 'd': ' x ',
                                  'e': None, 'f': True, 'g': 1})
    assert [(o.key, o.text) for o in ovs] == [('optimizer.lr', '1.0e-06'), ('a', '-0.0'), ('b', '0.0'),
                                              ('c', '[1, 2.5]'), ('d', 'x'), ('e', 'null'), ('f', 'true'),
                                              ('g', '1')]
    assert overrides_from_mapping({'a': -0.0})[0].text == '-0.0'   # cached per type and spelling
