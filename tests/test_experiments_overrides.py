"""`--run` specs and `--cfg-options` overrides."""
import pytest

from semiseg.experiments import get_runs
from semiseg.experiments.overrides import OverrideError, apply_overrides, parse_cfg_options, parse_value
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
    out = apply_overrides(cfg, parse_cfg_options([
        'epochs=2', 'optimizer.lr=1e-3', 'optimizer.paramwise_cfg.custom_keys.head.lr_mult=5',
        'seed=3', 'precision=bf16', 'maskclip_consistency_lambda=0.2', 'img_scale=null']))
    assert out['epochs'] == 2 and out['optimizer']['lr'] == 1e-3
    assert out['optimizer']['paramwise_cfg']['custom_keys']['head'] == {'lr_mult': 5}
    assert out['seed'] == 3 and out['precision'] == 'bf16' and out['img_scale'] is None
    assert list(out)[-2:] == ['seed', 'precision']  # engine options are appended
    assert cfg['epochs'] == 80 and cfg['optimizer']['lr'] == 1e-4 and 'seed' not in cfg  # untouched


def test_engine_option_already_in_config_is_replaced_in_place():
    cfg = get_runs(0)[0]
    out = apply_overrides(cfg, parse_cfg_options(['num_workers=2']))
    assert out['num_workers'] == 2 and list(out) == list(cfg)


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
    ('epochs=abc', 'epochs expects a number'),
    ('use_fp=1', 'use_fp expects true or false'),
    ('precision=16', 'precision expects a string'),
])
def test_unknown_or_mistyped_keys(item, message):
    with pytest.raises(OverrideError, match=message.replace('(', r'\(').replace(')', r'\)')):
        apply_overrides(get_runs(40)[0], parse_cfg_options([item]))
