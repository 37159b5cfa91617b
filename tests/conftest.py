"""Shared fixtures. Reference data (official splits, release configs, goldens) lives outside the
repo in `../shared/reference` (or `$SEMISEG_REFERENCE`); tests that need it skip without it."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REFERENCE_ENV = 'SEMISEG_REFERENCE'


def reference_path() -> Path:
    """Where the reference data is expected (it may not exist)."""
    env = os.environ.get(REFERENCE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / 'shared' / 'reference'


def require_reference(*relative: str) -> Path:
    """The reference folder; skips the calling test when it or one of `relative` is missing."""
    root = reference_path()
    for rel in ('',) + relative:
        if not (root / rel).exists():
            pytest.skip(f'reference data missing: {root / rel} (set {REFERENCE_ENV})')
    return root


def load_reference_module(name: str) -> ModuleType:
    """Import a helper script shipped with the reference data (e.g. `synth_weights`)."""
    path = require_reference(f'{name}.py') / f'{name}.py'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    """The reference data folder; the test is skipped when it is absent."""
    return require_reference()
