"""`python -m semiseg.tools.bench --what data`: per-stage times, samples/s/core, cores per GPU, and the
release's SemiDataset timed on the same samples when its source is present."""
from __future__ import annotations

import json

import pytest

from semiseg.tools import bench, bench_data


def test_data_phase_of_a_run(tmp_path, capsys):
    out = tmp_path / 'data.json'
    assert bench.main(['--exp', '0', '--run', '1', '--what', 'data', '--crop', '48', '--samples', '2',
                       '--repeats', '1', '--paths', 'release', 'device', '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    paths = result['crops']['48']
    assert set(paths) == {'release', 'device'}
    for streams in paths.values():
        assert set(streams) == {'labeled', 'unlabeled', 'partner'}     # SemiVL loads all three
        for ms in streams.values():
            assert all(ms[s] >= 0 for s in bench_data.STAGES)
            assert ms['total'] == pytest.approx(sum(ms[s] for s in bench_data.STAGES), rel=1e-6)
    assert paths['device']['unlabeled']['device_ops'] > 0
    report = capsys.readouterr().out
    assert 'samples/s/core' in report and 'cores @ 40 ms' in report


def test_cores_per_gpu():
    streams = {'labeled': {'total': 10.0}, 'unlabeled': {'total': 40.0}, 'partner': {'total': 30.0}}
    assert bench_data.cores_per_gpu(streams, batch=2, step_time=0.04) == pytest.approx(4.0)


def test_compare_release(tmp_path, capsys):
    from semiseg.tools.release_pipeline import load_release_semi
    if load_release_semi() is None:
        pytest.skip('UniMatch release source not present (SEMISEG_UNIMATCH_RELEASE)')
    assert bench_data.main(['--crop', '40', '--samples', '2', '--repeats', '1', '--paths', 'fast',
                            '--compare-release']) == 0
    report = capsys.readouterr().out
    assert '| unimatch-release | unlabeled |' in report and '| fast | unlabeled |' in report


def test_compare_release_refuses_the_ratio_rescale(capsys):
    """SemiVL's runs rescale by mmseg's ratio rule, which the UniMatch release does not have."""
    from semiseg.tools.release_pipeline import load_release_semi
    if load_release_semi() is None:
        pytest.skip('UniMatch release source not present (SEMISEG_UNIMATCH_RELEASE)')
    assert bench_data.main(['--exp', '40', '--run', '0', '--crop', '40', '--samples', '2', '--repeats', '1',
                            '--compare-release']) == 2
    assert "UniMatch's long-side rescale" in capsys.readouterr().err
