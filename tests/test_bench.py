"""`python -m semiseg.tools.bench`: train and eval benchmarks on CPU with random inputs (exp 0,
exp 40 at a tiny crop), real data, the phase breakdown and --compare."""
import json

import pytest
import torch

from semiseg.tools import bench
from semiseg.tools.bench import PhaseProbe, Setting, main, parse_setting

torch.set_num_threads(2)
CPU = torch.device('cpu')


def _check_record(rec: dict, what: str = 'train') -> None:
    s = rec['seconds_per_iter']
    assert 0 < s['min'] <= s['median'] <= s['max'] and s['p10'] <= s['p90']
    assert rec['images_per_s'] > 0 and rec['peak_memory_gib'] > 0 and rec['flops_per_iter'] > 0
    assert rec['tflops_per_s'] == pytest.approx(rec['flops_per_iter'] / s['median'] / 1e12)
    phases = rec['phases']
    assert list(phases) == list(bench.TRAIN_PHASES if what == 'train' else bench.EVAL_PHASES)
    assert all(p['seconds'] >= 0 for p in phases.values())
    # the phases tile the iteration: their sum is the wall time up to synchronisation overhead
    assert rec['phase_seconds_sum'] == pytest.approx(s['mean'], rel=0.2, abs=5e-3)
    assert sum(p['flops'] for p in phases.values()) == rec['flops_per_iter']


def test_exp0_train_json_fields(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert main(['--exp', '0', '--run', '0', '--iters', '2', '--warmup', '1', '--device', 'cpu',
                 '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['exp'] == 0 and result['what'] == 'train' and result['device'] == 'cpu'
    rec = result['settings'][0]
    _check_record(rec)
    assert rec['batch'] == 4 and rec['crop'] == 64
    assert rec['images_per_iter'] == 4   # supervised: labeled images only
    ph = rec['phases']
    assert ph['main_forward']['flops'] > 0 and ph['backward']['flops'] > ph['main_forward']['flops']
    assert ph['pseudo_labels']['flops'] == ph['guidance']['flops'] == ph['strong_forward']['flops'] == 0
    assert ph['optimizer']['seconds'] > 0
    assert 's/iter' in capsys.readouterr().out


@pytest.mark.parametrize('run, model_phases', [
    (2, ('pseudo_labels', 'guidance', 'main_forward', 'strong_forward')),   # SemiVL with guidance
    (5, ('pseudo_labels', 'main_forward')),                                   # AllSpark
    (6, ('pseudo_labels', 'main_forward', 'strong_forward')),                 # UniMatch V2: EMA teacher
])
def test_phases_of_other_methods(run, model_phases):
    result = bench.benchmark(0, run, 'train', [Setting(batch=2)], CPU, iters=1, warmup=0)
    rec = result['settings'][0]
    _check_record(rec)
    assert rec['images_per_iter'] == 4   # 2 labeled + 2 unlabeled
    for phase in bench.MODEL_PHASES:
        assert (rec['phases'][phase]['flops'] > 0) == (phase in model_phases), phase


def test_exp40_small_crop():
    """The SemiVL model of exp 40 (random init, 176M parameters) at crop 32, 1+1 images."""
    result = bench.benchmark(40, 0, 'train', [Setting(batch=1, crop=32)], CPU, iters=1, warmup=0)
    rec = result['settings'][0]
    _check_record(rec)
    assert rec['crop'] == 32 and rec['images_per_iter'] == 2
    assert all(rec['phases'][p]['flops'] > 0 for p in bench.MODEL_PHASES)


def test_eval_bench_uses_the_run_eval_mode():
    result = bench.benchmark(0, 0, 'eval', [Setting(max_windows=1), Setting()], CPU, iters=1, warmup=0)
    one, batched = result['settings']
    _check_record(one, 'eval')
    assert one['eval_mode'] == 'shifted_sliding_window' and one['eval_size'] == [64, 86]
    assert one['flops_per_iter'] == batched['flops_per_iter']   # same windows, fewer forwards


def test_real_data_batches_time_the_data_phase(tmp_path):
    result = bench.benchmark(0, 0, 'train', [Setting()], CPU, iters=2, warmup=0,
                             extra={'data_root': str(tmp_path / 'toy')}, use_data=True, workers=0)
    rec = result['settings'][0]
    _check_record(rec)
    assert result['data'] and rec['phases']['data']['seconds'] > 0


def test_compare_prints_ratios(tmp_path, capsys):
    out = tmp_path / 'cmp.json'
    assert main(['--exp', '0', '--run', '0', '--iters', '1', '--warmup', '0', '--device', 'cpu', '--out',
                 str(out), '--compare', 'precision=fp32', 'precision=bf16,batch=2,checkpointing=1']) == 0
    text = capsys.readouterr().out
    assert 'speedup' in text and '\ndefault ' in text and '\nbatch=2,precision=bf16,checkpointing=1 ' in text
    first, second = json.loads(out.read_text())['settings']
    assert first['ratio_to_first']['speedup'] == pytest.approx(1.0)
    assert second['ratio_to_first']['speedup'] == pytest.approx(
        first['seconds_per_iter']['median'] / second['seconds_per_iter']['median'])
    assert second['batch'] == 2 and second['images_per_iter'] == 2


def test_parse_setting():
    base = Setting(batch=2)
    s = parse_setting('precision=bf16, compile=1, checkpointing=true, fused=auto, max_windows=4', base)
    assert s == Setting(batch=2, precision='bf16', compile='inductor', checkpointing=True, max_windows=4)
    assert parse_setting('compile=eager', base).compile == 'eager'
    assert s.label(base) == 'precision=bf16,compile=inductor,checkpointing=1,max_windows=4'
    for bad in ('precision=fp16', 'speed=2', 'batch'):
        with pytest.raises(ValueError):
            parse_setting(bad, base)


def test_probe_is_transparent():
    model = torch.nn.Conv2d(3, 2, 1)
    probe = PhaseProbe(model)
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(probe(x), model(x))
    assert probe.weight is model.weight and probe.inner is model
    with pytest.raises(AttributeError):
        probe.no_such_attribute  # noqa: B018


def test_device_checks_are_prepared_for_a_gpu(capsys):
    """The prepared GPU measurements name existing runs and valid settings; without CUDA they refuse."""
    from semiseg.experiments import get_runs
    from semiseg.tools import device_checks
    for exp, run, what, settings, _ in device_checks.GROUPS.values():
        assert 0 <= run < len(get_runs(exp)) and what in ('train', 'eval') and settings
    if not torch.cuda.is_available():
        assert device_checks.main(['--out', 'unused']) == 2
        assert 'no CUDA device' in capsys.readouterr().err
