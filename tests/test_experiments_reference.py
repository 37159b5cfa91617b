"""Exps 40-44 must reproduce the SemiVL release's generated configs (32 files)."""
import difflib
import re
from pathlib import Path

import pytest

import semiseg
from semiseg.experiments.io import dump_config, load_release_config
from semiseg.experiments.registry import get_runs

REFERENCE = Path(__file__).resolve().parents[1].parent / 'shared' / 'reference' / 'semivl_configs'
RUN_COUNTS = {40: 5, 41: 12, 42: 5, 43: 5, 44: 5}
CASES = [(e, r) for e, n in RUN_COUNTS.items() for r in range(n)]
# keys where ours differs from the release by design
OURS = {'data_root', 'version'}


def _typed(value):
    """Value with its type, so 10 != 10.0 and True != 1 in the comparison."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def test_reference_files_present():
    if not REFERENCE.is_dir():
        pytest.skip(f'{REFERENCE} absent')
    files = sorted(p.name for p in REFERENCE.glob('exp-*_run-*.yaml'))
    assert files == sorted(f'exp-{e}_run-{r}.yaml' for e, r in CASES)


@pytest.mark.parametrize('exp_id,run', CASES)
def test_config_equals_release(exp_id, run):
    if not REFERENCE.is_dir():
        pytest.skip(f'{REFERENCE} absent')
    ref = load_release_config(REFERENCE / f'exp-{exp_id}_run-{run}.yaml')
    ours = get_runs(exp_id)[run]
    assert ours['data_root'] == ref['data_root'], 'default data root must give the release path'
    assert ours['version'] == semiseg.__version__
    ref = {k: v for k, v in ref.items() if k not in OURS}
    mine = {k: v for k, v in ours.items() if k not in OURS}
    if list(mine) != list(ref) or _typed(mine) != _typed(ref):
        diff = '\n'.join(difflib.unified_diff(
            dump_config(ref).splitlines(), dump_config(mine).splitlines(),
            f'release exp-{exp_id}_run-{run}.yaml', 'semiseg', lineterm=''))
        pytest.fail(f'exp {exp_id} run {run} differs from the release '
                    f'(fix semiseg/experiments/semivl.py or config.py):\n{diff}')


def test_written_yaml_matches_release_text():
    """Our YAML text equals the release file up to data_root, version and the tuple tag."""
    if not REFERENCE.is_dir():
        pytest.skip(f'{REFERENCE} absent')
    for exp_id, run in CASES:
        text = (REFERENCE / f'exp-{exp_id}_run-{run}.yaml').read_text()
        text = text.replace('!!python/tuple ', '')
        text = re.sub(r"^version: .*$", f"version: {semiseg.__version__}", text, flags=re.M)
        ours = dump_config(get_runs(exp_id)[run])
        ours = re.sub(r"^version: .*$", f"version: {semiseg.__version__}", ours, flags=re.M)
        assert ours == text, f'exp {exp_id} run {run}: YAML text differs'
