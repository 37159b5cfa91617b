"""The one scan of an experiment's run folders (semiseg.launch.runindex) behind --status and --results:
the folder index is used only while it is true, damaged input is skipped, alias bombs stay refused,
and matching by keys finds exactly the folders a config-by-config comparison finds. (Timing over
2,000 folders is a benchmark: tests/bench_status.py.)"""
from __future__ import annotations

import json
import os
import time

import pytest
from _run_folders import sweep_configs, write_run_folders

from semiseg.experiments.identity import REPEAT_FREE_KEYS
from semiseg.experiments.io import load_config
from semiseg.launch import results as res
from semiseg.launch import runindex
from semiseg.launch.rundir import exp_dir, normalized_config
from semiseg.launch.runindex import INDEX_FILE, scan_run_folders
from semiseg.launch.status import status_rows


@pytest.fixture
def folders(tmp_path):
    cfgs = sweep_configs(0, 4, points=3, seeds=2, key='optimizer.lr', start=0.01)
    return cfgs, write_run_folders(cfgs, tmp_path), tmp_path


def _counting(monkeypatch):
    calls = []
    real = runindex._read_config

    def read(path, size):
        calls.append(os.path.basename(os.path.dirname(path)))
        return real(path, size)
    monkeypatch.setattr(runindex, '_read_config', read)
    return calls


def test_index_is_used_while_true(folders, monkeypatch):
    cfgs, dirs, root = folders
    calls = _counting(monkeypatch)
    first = scan_run_folders(root, 0)
    assert [f.path for f in first] == dirs and len(calls) == 6          # oldest first, each parsed once
    index = exp_dir(root, 0) / INDEX_FILE
    assert set(json.loads(index.read_text())['folders']) == {d.name for d in dirs}
    calls.clear()
    again = scan_run_folders(root, 0)
    assert calls == [] and [(f.path, f.config, f.exact, f.repeat) for f in again] == \
        [(f.path, f.config, f.exact, f.repeat) for f in first]
    changed = load_config(dirs[1] / 'config.yaml')
    changed['epochs'] = 99
    (dirs[1] / 'config.yaml').write_text(json.dumps(changed))            # edited: parsed again (JSON is YAML)
    os.utime(dirs[1] / 'config.yaml', ns=(1, 1))
    (dirs[2] / 'config.yaml').unlink()                                   # no config: not a run folder
    third = scan_run_folders(root, 0)
    assert calls == [dirs[1].name] and len(third) == 5
    assert next(f for f in third if f.path == dirs[1]).config['epochs'] == 99
    assert dirs[2].name not in json.loads(index.read_text())['folders']
    index.write_text('{"version": 1, "keys": "another scheme", "folders": {}}')   # other key definitions
    calls.clear()
    assert len(scan_run_folders(root, 0)) == 5 and len(calls) == 5
    index.write_text('not json')
    calls.clear()
    assert len(scan_run_folders(root, 0)) == 5 and len(calls) == 5
    assert scan_run_folders(root, 7) == []                               # no such experiment folder


def test_damaged_configs_are_skipped_and_bombs_refused(folders, monkeypatch):
    cfgs, dirs, root = folders
    (dirs[0] / 'config.yaml').write_text('dataset: [unclosed\n')
    (dirs[1] / 'config.yaml').write_bytes(b'\xff\xfe not utf-8')
    bomb = 'a: &a [x, x, x, x, x, x, x, x, x]\n' + ''.join(
        f'{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n' for p, c in zip('abcdefgh', 'bcdefghi'))
    (dirs[2] / 'config.yaml').write_text(bomb)
    anchored = dict(load_config(dirs[3] / 'config.yaml'))
    text = (dirs[3] / 'config.yaml').read_text().replace('scale_ratio_range: [0.5, 2.0]',
                                                         'scale_ratio_range: &r [0.5, 2.0]')
    (dirs[3] / 'config.yaml').write_text(text)                           # a harmless anchor: the limited loader
    t0 = time.perf_counter()
    found = scan_run_folders(root, 0)
    assert time.perf_counter() - t0 < 5
    assert [f.path for f in found] == dirs[3:]
    assert found[0].config == anchored
    calls = _counting(monkeypatch)
    assert len(scan_run_folders(root, 0)) == 3 and calls == []          # unreadable ones are remembered too


def _naive_exact(cfg, dirs):
    want = normalized_config(cfg)
    return [d for d in dirs if load_config(d / 'config.yaml') == want]


def _naive_repeats(cfg, dirs):
    def strip(c):
        return {k: v for k, v in c.items() if k not in REPEAT_FREE_KEYS}
    want = strip(normalized_config(cfg))
    return [d for d in dirs if strip(load_config(d / 'config.yaml')) == want]


def test_key_matching_equals_config_comparison(tmp_path):
    """48 folders: 4 learning rates x 6 seeds, some with a runtime option changed, plus a folder of
    another schedule; status and results find the folders a config-by-config comparison finds."""
    cfgs = sweep_configs(0, 1, points=4, seeds=6, key='optimizer.lr', start=0.01)
    dirs = write_run_folders(cfgs, tmp_path)
    dirs += write_run_folders([{**c, 'num_workers': 3} for c in cfgs[:6]], tmp_path / 'more')
    for d in dirs[len(cfgs):]:   # same experiment folder: move them next to the others
        d.rename(exp_dir(tmp_path, 0) / f'{d.name[:-5]}m{d.name[-4:]}')
    dirs = sorted(exp_dir(tmp_path, 0).iterdir())
    dirs = [d for d in dirs if d.is_dir()]
    selected = cfgs[::5] + [{**cfgs[0], 'epochs': 3}]                   # runs 0, 5, ...; one never made
    indices = list(range(0, len(cfgs), 5)) + [99]
    rows = status_rows(selected, tmp_path, runner=lambda cmd: '', indices=indices)
    assert [r.run for r in rows] == indices
    for cfg, row in zip(selected, rows):
        same = _naive_exact(cfg, dirs)
        assert row.folder == (max(same, key=lambda d: (d.name[:11], (d / 'config.yaml').stat().st_mtime, d.name))
                              if same else None)
    results = res.collect_results(0, cfgs, tmp_path, list(range(len(cfgs))), runner=lambda cmd: '')
    assert [r.runs for r in results] == [list(range(k, k + 6)) for k in range(0, 24, 6)]
    for k, row in enumerate(results):
        assert sorted(row.folders) == sorted(_naive_repeats(cfgs[6 * k], dirs))
    assert len(results[0].folders) == 12                                # 6 seeds + 6 with num_workers=3


def test_finished_folders_come_from_the_finished_index(folders, monkeypatch):
    cfgs, dirs, root = folders
    first = runindex.read_folder_files(root, 0, dirs)
    saved = json.loads((exp_dir(root, 0) / runindex.FINISHED_FILE).read_text())['folders']
    assert sorted(saved) == sorted(d.name for d in dirs[:3])             # the finished ones (STATES)
    assert 'per_class_iou' not in saved[dirs[0].name]['results']
    reads = []
    real = runindex.FolderFiles.read
    monkeypatch.setattr(runindex.FolderFiles, 'read', classmethod(lambda cls, d: reads.append(d) or real(d)))
    again = runindex.read_folder_files(root, 0, dirs)
    assert reads == dirs[3:]                                             # unfinished folders are read each time
    for d in dirs:
        assert again[d].state == first[d].state and again[d].record == first[d].record
        assert again[d].results == {k: v for k, v in first[d].results.items() if 'per_class' not in k}
    results = json.loads((dirs[1] / 'results.json').read_text())
    (dirs[1] / 'results.json').write_text(json.dumps({**results, 'best_miou': 12.5}))   # changed: read again
    reads.clear()
    assert runindex.read_folder_files(root, 0, dirs[:2])[dirs[1]].results['best_miou'] == 12.5
    assert reads == [dirs[1]]
    kept = json.loads((exp_dir(root, 0) / runindex.FINISHED_FILE).read_text())['folders']
    assert sorted(kept) == sorted(d.name for d in dirs[:3])              # entries not asked about stay
    rows = res.collect_results(0, cfgs, root, list(range(len(cfgs))), runner=lambda cmd: '')
    (exp_dir(root, 0) / runindex.FINISHED_FILE).unlink()
    (exp_dir(root, 0) / INDEX_FILE).unlink()
    fresh = res.collect_results(0, cfgs, root, list(range(len(cfgs))), runner=lambda cmd: '')
    assert [r.as_dict() for r in rows] == [r.as_dict() for r in fresh]
