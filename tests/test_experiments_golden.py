"""Experiment 0's generated configs against the committed reference file.

If a change is intended, accept it with
    SEMISEG_ACCEPT_REFERENCE=1 python -m pytest tests/test_experiments_golden.py
and commit tests/reference/exp0_configs.yaml together with the change.
"""
import difflib
import os
from pathlib import Path

from semiseg.experiments.io import dump_config
from semiseg.experiments.registry import get_runs

REFERENCE = Path(__file__).resolve().parent / 'reference' / 'exp0_configs.yaml'


def _render() -> str:
    """All exp-0 runs as YAML documents, default data root, without the package version."""
    docs = []
    for index, cfg in enumerate(get_runs(0, data_root='~/data')):
        cfg = {k: v for k, v in cfg.items() if k != 'version'}
        docs.append(f'# exp 0 run {index}\n{dump_config(cfg)}')
    return '---\n'.join(docs)


def test_exp0_configs_match_reference():
    text = _render()
    if os.environ.get('SEMISEG_ACCEPT_REFERENCE'):
        REFERENCE.write_text(text)
    expected = REFERENCE.read_text()
    if text != expected:
        diff = '\n'.join(difflib.unified_diff(expected.splitlines(), text.splitlines(),
                                              str(REFERENCE.name), 'generated', lineterm=''))
        raise AssertionError(f'exp 0 configs changed:\n{diff}\nIf intended, run '
                             f'SEMISEG_ACCEPT_REFERENCE=1 python -m pytest {Path(__file__).name} '
                             f'and commit {REFERENCE.relative_to(REFERENCE.parents[1])}')
