"""Registry and config generation: experiment ids, exp 0, conditional keys, data roots, YAML."""
import os

import pytest
import yaml

import semiseg
from semiseg.engine.options import ENGINE_OPTIONS
from semiseg.experiments import build_config, get_runs, list_experiments, make_params
from semiseg.experiments.config import dataset_folder, datasets_root
from semiseg.experiments.io import dump_config, load_config, save_experiment_configs, write_config
from semiseg.experiments.registry import UnknownExperiment, get_experiment


def test_experiment_ids_and_counts():
    counts = {e.exp_id: len(e.runs) for e in list_experiments()}
    assert counts == {0: 7, 1: 30, 30: 5, 31: 8, 32: 5, 33: 3, 40: 5, 41: 12, 42: 5, 43: 5, 44: 5, 50: 5, 51: 4, 52: 4,
                      53: 4, 60: 15, 61: 8, 62: 10, 63: 15, 64: 19, 65: 5, 66: 19}
    assert all(e.description and '\n' not in e.description for e in list_experiments())


def test_unknown_experiment_lists_valid_ids():
    with pytest.raises(UnknownExperiment, match='valid: 0, 1, 30, 31'):
        get_experiment(7)


@pytest.mark.parametrize('exp_id', [0, 1, 30, 31, 32, 33, 40, 41, 42, 43, 44, 50, 51, 52, 53, 60, 61, 62, 63, 64,
                                    65, 66])
def test_names_unique_and_configs_dump_safely(exp_id):
    cfgs = get_runs(exp_id)
    assert len({c['name'] for c in cfgs}) == len(cfgs)
    for cfg in cfgs:
        assert cfg['exp'] == exp_id and cfg['version'] == semiseg.__version__
        assert yaml.safe_load(dump_config(cfg)) == cfg   # no tuples or other unsafe types


def test_exp0_demo_runs():
    runs = get_runs(0, data_root='/data')
    assert [c['method'] for c in runs] == ['supervised', 'semivl', 'semivl', 'fixmatch', 'unimatch', 'allspark',
                                           'unimatch_v2']
    sup, svl, guided = runs[:3]
    for cfg in runs[:4]:
        assert cfg['dataset'] == 'toy' and cfg['data_root'] == '/data/toy/' and cfg['nclass'] == 5
        assert cfg['split'] == '16' and cfg['img_scale'] is None and cfg['crop_size'] == 64
        assert cfg['scale_ratio_range'] == [0.5, 2.0]
        assert cfg['model'] == 'mmseg.vlm-vlg-aspp-s2p2-sk02-ft-tinyvit'
        assert (cfg['n_gpus'], cfg['n_nodes'], cfg['batch_size'], cfg['epochs']) == (1, 1, 4, 18)
        assert cfg['eval_mode'] == 'shifted_sliding_window' and 'stride' not in cfg
        assert cfg['eval_every_n_epochs'] == 6
        assert cfg['optimizer']['type'] == 'AdamW' and cfg['optimizer']['lr'] == 1e-3
        keys = cfg['optimizer']['paramwise_cfg']['custom_keys']
        assert keys['backbone'] == {'lr_mult': 1.0} and keys['head'] == {'lr_mult': 10.0}
        assert cfg['criterion']['name'] == 'CELoss' and cfg['text_embedding_variant'] == 'single'
        # engine options come last, after the release's keys
        assert list(cfg)[-2:] == ['num_workers', 'log_every']
        assert (cfg['num_workers'], cfg['log_every']) == (0, 10)
    assert 'use_fp' not in sup and 'pleval' not in sup and svl['conf_thresh'] == 0.95
    assert svl['maskclip_consistency_lambda'] == 0 and svl['clip_encoder'] is None
    assert guided['maskclip_consistency_lambda'] == [0.1, 0] and guided['clip_encoder'] == 'mcvit16'


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv('SEMISEG_DATA', raising=False)
    assert datasets_root() == '~/data'
    assert dataset_folder('pascal') == '~/data/voc/'
    monkeypatch.setenv('SEMISEG_DATA', '/env/root/')
    assert dataset_folder('ade') == '/env/root/ADEChallengeData2016/'
    assert dataset_folder('cityscapes', '/flag') == '/flag/cityscapes/'
    assert get_runs(40, '/flag')[0]['data_root'] == '/flag/voc/'
    monkeypatch.chdir(tmp_path)
    assert dataset_folder('coco', 'rel/data') == f'{os.getcwd()}/rel/data/coco/'
    assert dataset_folder('coco', '~user/d/') == '~user/d/coco/'
    assert dataset_folder('mine', '/d') == '/d/mine/'        # a custom dataset: its own name
    with pytest.raises(ValueError, match='cannot name a folder'):
        dataset_folder('../etc')


def test_conditional_keys():
    ade = build_config(make_params(1, {'dataset': 'ade'}))
    assert list(ade)[:5] == ['dataset', 'data_root', 'nclass', 'reduce_zero_label', 'split']
    voc = build_config(make_params(1, {}))
    assert 'reduce_zero_label' not in voc and voc['stride'] == 426 and 'scheduler_max_iters' not in voc
    assert voc['model_args'] == {'maskclip_class_filter': None}
    smi = build_config(make_params(1, {'scheduler_max_iters': 5000}))
    assert list(smi)[list(smi).index('iters') + 1] == 'scheduler_max_iters'
    frp = build_config(make_params(1, {'mcc_fix_resize_pos': True, 'crop_size': 801,
                                       'maskclip_consistency_lambda': 0.1}))
    assert frp['mcc_fix_resize_pos'] is True and list(frp).index('mcc_fix_resize_pos') == \
        list(frp).index('mcc_loss_reduce') + 1
    cf = build_config(make_params(1, {'renorm_clip_img': True}))
    assert cf['model_args'] == {'maskclip_class_filter': None, 'renorm_clip_img': True}
    org = build_config(make_params(1, {'opt': 'original', 'dataset': 'cityscapes'}))
    assert 'optimizer' not in org and (org['lr'], org['lr_multi']) == (1e-4, 1)
    with pytest.raises(ValueError, match='unknown run parameter.*maskclip_class_filter'):
        build_config(make_params(1, {'maskclip_class_filter': 1}))   # the release's model refuses any filter


def test_engine_options_are_not_in_release_configs():
    for exp_id in (40, 41, 42, 43, 44):
        for cfg in get_runs(exp_id):
            assert not set(cfg) & set(ENGINE_OPTIONS)


def test_save_experiment_configs(tmp_path, monkeypatch):
    monkeypatch.setenv('SEMISEG_CONFIG_DIR', str(tmp_path / 'gen'))
    cfgs = get_runs(41)
    paths = save_experiment_configs(41, cfgs)
    assert [p.name for p in paths] == [f'{c["name"]}.yaml' for c in cfgs]
    assert all(p.parent == tmp_path / 'gen' / 'exp-41' for p in paths)
    assert load_config(paths[3]) == cfgs[3]
    text = paths[0].read_text()
    assert text.startswith('dataset: pascal\ndata_root: ~/data/voc/\n')
    assert 'img_scale: [2048, 512]\n' in text and '  kwargs: {ignore_index: 255}\n' in text


def test_write_config_is_atomic_and_leaves_no_temp(tmp_path):
    write_config({'a': 1}, tmp_path / 'x' / 'c.yaml')
    assert sorted(p.name for p in (tmp_path / 'x').iterdir()) == ['c.yaml']
