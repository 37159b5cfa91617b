"""Engine end to end on CPU with tiny stand-ins (tests/_engine_standins.py): run folder contents,
SIGTERM -> latest.pth + exact resume, NaN loss, corrupt checkpoint, evaluation cadence."""
from __future__ import annotations

import json
import re
import signal

import _engine_standins as standins
import pytest
import torch
import yaml

from semiseg.engine import CheckpointError, TrainingFailed, TrainingInterrupted
from semiseg.engine import train as engine_train
from semiseg.engine.checkpoint import CHECKPOINT_KEYS, read_training_checkpoint

torch.set_num_threads(1)


PARTS = standins.parts()


def train(cfg, run_dir):
    """The engine's train with the stand-in parts."""
    return engine_train(cfg, run_dir, PARTS)


def _weights(run_dir):
    return read_training_checkpoint(run_dir / 'latest.pth')['model']


def _evaluated_epochs(run_dir) -> list[int]:
    text = (run_dir / 'train.log').read_text()
    return [int(e) for e in re.findall(r'Evaluation original, epoch (\d+)', text)]


def test_short_run_writes_the_run_folder(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = train(standins.base_config(), tmp_path)

    assert yaml.safe_load((tmp_path / 'config.yaml').read_text())['method'] == 'standin'
    log = (tmp_path / 'train.log').read_text()
    assert re.search(r'^\[[\d\- :]+\]\[INFO\] ===> Epoch 0/1, lr 1\.000e-02, previous best 0\.00', log, re.M)
    assert 'Total params' in log and 'decode_head: trainable' in log
    iters = [int(i) for i in re.findall(r'Iter (\d+)/12 \| loss_all', log)]
    assert iters == [2, 4, 6, 8, 10, 12]
    assert re.search(r'Iter 12/12 \| loss_all [\d.]+ \| loss_x [\d.]+ \| loss_s1 [\d.]+ \| loss_fp [\d.]+ '
                     r'\| mask_ratio 0\.500 \| lr [\d.e+-]+ \| iter_time [\d.]+s \| eta 0:00:00', log)
    assert log.count('Class [2 dark] IoU:') == 2

    acc = EventAccumulator(str(tmp_path), size_guidance={'images': 0, 'scalars': 0})
    acc.Reload()
    scalars = set(acc.Tags()['scalars'])
    assert {'train/loss_all', 'train/loss_x', 'train/loss_s1', 'train/loss_fp', 'train/lr', 'train/mask_ratio',
            'train/iter_time', 'eval/mIoU', 'eval/background_IoU', 'eval/dark_IoU'} <= scalars
    assert [e.step for e in acc.Scalars('train/loss_all')] == [2, 4, 6, 8, 10, 12]
    assert [e.step for e in acc.Scalars('eval/mIoU')] == [0, 1]
    assert acc.Scalars('eval/mIoU')[-1].value == pytest.approx(results['miou'], abs=1e-4)
    assert {'debug/panel_0', 'debug/panel_1'} <= set(acc.Tags()['images'])

    assert sorted(p.name for p in (tmp_path / 'debug').iterdir()) == [
        '0000000_0-0.png', '0000000_0-1.png', '0000006_0-0.png', '0000006_0-1.png']
    latest = read_training_checkpoint(tmp_path / 'latest.pth')
    assert set(CHECKPOINT_KEYS) <= set(latest)
    assert latest['iteration'] == 12 and latest['epoch'] == 2 and latest['config']['method'] == 'standin'
    assert any(k.startswith('clip_encoder.') for k in latest['model'])   # unwrapped, complete state_dict
    assert read_training_checkpoint(tmp_path / 'best.pth')['best_miou'] == pytest.approx(results['best_miou'])

    on_disk = json.loads((tmp_path / 'results.json').read_text())
    assert on_disk == results
    assert results['finished'] is True and results['iters'] == 12 and results['epochs'] == 2
    assert list(results['per_class_iou']) == list(standins.CLASS_NAMES)
    assert results['miou'] == pytest.approx(sum(results['per_class_iou'].values()) / 3)
    assert results['best_miou'] >= results['miou']
    state = json.loads((tmp_path / 'state.json').read_text())
    assert state['state'] == 'finished' and state['iteration'] == state['total_iters'] == 12
    assert state['error'] is None and state['best_miou'] == pytest.approx(results['best_miou'])


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    """An uninterrupted 2-epoch run the resumed runs must match bit for bit."""
    run_dir = tmp_path_factory.mktemp('reference')
    results = train(standins.base_config(debug_every_epoch=False), run_dir)
    return results, _weights(run_dir)


@pytest.mark.parametrize('stop_at', [7, 5], ids=['mid-epoch', 'last-iteration-of-epoch'])
def test_sigterm_saves_latest_and_resume_is_exact(tmp_path, reference_run, stop_at):
    ref_results, ref_weights = reference_run
    before = signal.getsignal(signal.SIGTERM)
    cfg = standins.base_config(debug_every_epoch=False, test_sigterm_at=stop_at)
    with pytest.raises(TrainingInterrupted, match=f'iteration {stop_at + 1}/12'):
        train(cfg, tmp_path)
    assert signal.getsignal(signal.SIGTERM) is before
    state = json.loads((tmp_path / 'state.json').read_text())
    assert state['state'] == 'interrupted' and state['iteration'] == stop_at + 1
    assert 'SIGTERM' in state['error']
    assert read_training_checkpoint(tmp_path / 'latest.pth')['iteration'] == stop_at + 1

    results = train(standins.base_config(debug_every_epoch=False), tmp_path)
    assert _evaluated_epochs(tmp_path) == [0, 1]      # the pending eval of epoch 0 ran exactly once
    assert results == ref_results
    weights = _weights(tmp_path)
    for k, v in ref_weights.items():
        assert torch.equal(weights[k], v), k


def test_nan_loss_fails_clearly_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    cfg = standins.base_config(ckpt_every=2, test_nan_at=5, debug_every_epoch=False)
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    from semiseg.engine.run import main

    assert main(['--run-dir', str(tmp_path)], parts=PARTS) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: non-finite loss at iteration 5 (epoch 0)')
    assert 'loss_s1=nan' in err[0] and 'latest.pth (iteration 4) is kept' in err[0]
    state = json.loads((tmp_path / 'state.json').read_text())
    assert state['state'] == 'failed' and 'iteration 5' in state['error']
    latest = read_training_checkpoint(tmp_path / 'latest.pth')
    assert latest['iteration'] == 4
    assert all(torch.isfinite(v).all() for v in latest['model'].values() if v.is_floating_point())
    with pytest.raises(TrainingFailed, match='iteration 5'):   # the same error in-process
        train(cfg, tmp_path)


def test_corrupt_checkpoint_is_a_clear_error_and_is_kept(tmp_path):
    latest = tmp_path / 'latest.pth'
    latest.write_bytes(b'not a checkpoint at all')
    # the reader names the file and what it is (semiseg.utils.checkpoint_io), the engine how to move it away
    with pytest.raises(CheckpointError, match=r'checkpoint .*latest\.pth.*not a torch checkpoint.*mv '):
        train(standins.base_config(), tmp_path)
    assert latest.read_bytes() == b'not a checkpoint at all'
    assert json.loads((tmp_path / 'state.json').read_text())['state'] == 'failed'


def test_evaluation_cadence_includes_epoch_zero_and_the_last_epoch(tmp_path):
    results = train(standins.base_config(epochs=4, eval_every_n_epochs=2, debug_every_epoch=False,
                                         log_every=100), tmp_path)
    assert _evaluated_epochs(tmp_path) == [0, 2, 3]
    assert results['iters'] == 24


def test_iters_sets_the_epoch_count(tmp_path):
    results = train(standins.base_config(epochs=None, iters=8, debug_every_epoch=False), tmp_path)
    assert results['epochs'] == 2 and results['iters'] == 12      # ceil(8 / 6) epochs of 6


def test_bf16_autocast_and_tuple_configs_train(tmp_path):
    cfg = standins.base_config(epochs=1, precision='bf16', debug_every_epoch=False, scale_ratio_range=(0.5, 2.0))
    results = train(cfg, tmp_path)
    assert results['iters'] == 6 and 0 <= results['miou'] <= 100
    assert yaml.safe_load((tmp_path / 'config.yaml').read_text())['scale_ratio_range'] == [0.5, 2.0]
    assert read_training_checkpoint(tmp_path / 'latest.pth')['config']['precision'] == 'bf16'


def test_hparams_entry_for_comparing_runs_in_tensorboard(tmp_path):
    """results go to tensorboard's HParams plugin with the run's settings (read back from the events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    results = train(standins.base_config(debug_every_epoch=False), tmp_path)
    acc = EventAccumulator(str(tmp_path), size_guidance={'scalars': 0, 'tensors': 0})
    acc.Reload()
    content = acc.PluginTagToContent('hparams')
    start = plugin_data_pb2.HParamsPluginData.FromString(content['_hparams_/session_start_info'])
    hparams = {k: v.ListFields()[0][1] for k, v in start.session_start_info.hparams.items()}
    assert hparams['optimizer.lr'] == 0.01 and hparams['batch_size'] == 4 and hparams['method'] == 'standin'
    assert hparams['seed'] == 0   # always there (a sweep's runs filter by seed), though the config leaves it out
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content['_hparams_/experiment'])
    assert {m.name.tag for m in experiment.experiment.metric_infos} == {'hparam/mIoU', 'hparam/best_mIoU'}
    assert acc.Scalars('hparam/mIoU')[-1].value == pytest.approx(results['miou'])
