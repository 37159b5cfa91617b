"""The UniMatch release's data pipeline (LiheYoung/UniMatch `dataset/semi.py` + `dataset/transform.py`),
imported at runtime from a local copy of the release, to time and test ours against it.

The release is never copied into this repository: `$SEMISEG_UNIMATCH_RELEASE` (or
`../.mirror/LiheYoung+UniMatch/repo` next to the checkout) is either a checkout holding
`dataset/semi.py` or a bare git directory, whose two files are read with `git show` into a
temporary folder at runtime.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

RELEASE_ENV = 'SEMISEG_UNIMATCH_RELEASE'
RELEASE_FILES = ('dataset/semi.py', 'dataset/transform.py')


def release_path() -> Path:
    env = os.environ.get(RELEASE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / '.mirror' / 'LiheYoung+UniMatch' / 'repo'


def _source_dir(path: Path) -> Path | None:
    """A folder holding the release's `dataset/` package, or None when it cannot be found."""
    if (path / RELEASE_FILES[0]).is_file():
        return path
    git_dir = path if (path / 'HEAD').is_file() else path / '.git'
    if not (git_dir / 'HEAD').is_file():
        return None
    out = Path(tempfile.mkdtemp(prefix='unimatch-release-'))
    (out / 'dataset').mkdir()
    for rel in RELEASE_FILES:
        res = subprocess.run(['git', f'--git-dir={git_dir}', 'show', f'HEAD:{rel}'], capture_output=True,
                             check=False)
        if res.returncode != 0:
            return None
        (out / rel).write_bytes(res.stdout)
    (out / 'dataset' / '__init__.py').write_text('')
    return out


@cache
def load_release_semi(path: Path | None = None) -> ModuleType | None:
    """The release's `dataset.semi` module (its `SemiDataset`), or None when the source is absent
    (imported once per process)."""
    src = _source_dir(path or release_path())
    if src is None:
        return None
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == 'dataset' or k.startswith('dataset.')}
    sys.path.insert(0, str(src))
    try:
        module = importlib.import_module('dataset.semi')
    finally:
        sys.path.remove(str(src))
        for k in [k for k in sys.modules if k == 'dataset' or k.startswith('dataset.')]:
            sys.modules[f'unimatch_release.{k}'] = sys.modules.pop(k)
        sys.modules.update(saved)
    return module
