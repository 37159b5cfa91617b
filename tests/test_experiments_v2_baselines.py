"""UniMatch V2's baselines as runs: exp 64 (fixmatch_ema, an experiment file) and exp 66 (the release's
`supervised.py`: labeled only, per-GPU batch x2, the labeled list repeated to a fixed length, no EMA)."""
from __future__ import annotations

import pytest

from semiseg.api import run_config
from semiseg.data.build import build_datasets
from semiseg.experiments.config import build_config
from semiseg.experiments.params import make_params
from semiseg.methods import method_info

# exp 66 run -> (V2 experiment, its DINOv2-B run, per-GPU batch, labeled samples)
SUPERVISED = {0: (60, 5, 8, 3000), 5: (61, 4, 4, 3000), 9: (62, 5, 8, 30000), 14: (63, 5, 4, 6000)}


@pytest.mark.parametrize('run', sorted(SUPERVISED))
def test_exp_66_is_the_v2_run_with_supervised_py_changes(run):
    exp, base, batch, samples = SUPERVISED[run]
    ours, v2 = run_config(66, run), run_config(exp, base)
    assert (ours['method'], ours['batch_size'], ours['labeled_samples']) == ('supervised', batch, samples)
    assert ours['batch_size'] == 2 * v2['batch_size'] and ours['epoch_over'] == 'labeled'
    assert '-ls' in ours['name'] and 'ema_decay' not in ours and 'conf_thresh' not in ours
    same = ('dataset', 'split', 'model', 'crop_size', 'optimizer', 'criterion', 'epochs', 'eval_mode',
            'eval_size_multiple', 'n_gpus')
    assert {k: ours.get(k) for k in same} == {k: v2.get(k) for k in same}


def test_labeled_samples_repeats_a_short_labeled_list_only(tmp_path):
    from semiseg.data.toy import ensure_toy_dataset
    root = str(ensure_toy_dataset(tmp_path / 'toy'))
    sup = method_info('supervised')
    plain = {**run_config(0, 0), 'data_root': root, 'epoch_over': 'labeled'}
    assert len(build_datasets(plain, sup).labeled) == 16
    cfg = {**plain, 'labeled_samples': 40}
    assert len(build_datasets(cfg, sup).labeled) == 40
    assert len(build_datasets({**cfg, 'labeled_samples': 8}, sup).labeled) == 16   # longer lists stay


def test_labeled_samples_is_refused_for_semi_supervised_methods():
    with pytest.raises(ValueError, match='labeled_samples is for labeled-only methods'):
        build_config(make_params(1, {'method': 'unimatch_v2', 'labeled_samples': 3000}))
    assert 'labeled_samples' not in build_config(make_params(1, {'method': 'supervised'}))
