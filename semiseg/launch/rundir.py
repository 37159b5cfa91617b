"""Run folders: `exp_root/exp-E/<YYMMDD-HHMM>_<name>_<uid5>/`, never overwritten.

A folder is identified with a run by its `config.yaml`; `results.json` with `finished: true`
marks it done. Unfinished folders of the same config are resumed instead of starting over.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from semiseg.experiments.io import load_config, write_config
from semiseg.utils.run_files import CONFIG_FILE, RESULTS_FILE
from semiseg.utils.safe_yaml import read_json

log = logging.getLogger(__name__)


def exp_dir(exp_root: Path, exp_id: int) -> Path:
    """The folder holding all run folders of experiment `exp_id`."""
    return Path(exp_root) / f'exp-{exp_id}'


def run_dir_path(cfg: dict[str, Any], exp_root: Path, now: datetime | None = None,
                 uid: str | None = None) -> Path:
    """A fresh run-folder path for `cfg` (not created)."""
    stamp = (now or datetime.now()).strftime('%y%m%d-%H%M')
    uid = uid or uuid.uuid4().hex[:5]
    return exp_dir(exp_root, cfg['exp']) / f'{stamp}_{cfg["name"]}_{uid}'


def create_run_dir(cfg: dict[str, Any], exp_root: Path, now: datetime | None = None,
                   uid: str | None = None) -> Path:
    """Create a new run folder with `config.yaml`; fails if the folder already exists."""
    path = run_dir_path(cfg, exp_root, now, uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(exist_ok=False)
    write_config(cfg, path / CONFIG_FILE)
    log.info('created run folder %s', path)
    return path


def is_finished(run_dir: Path) -> bool:
    """Whether the run in `run_dir` wrote `results.json` with `finished: true`."""
    path = Path(run_dir) / RESULTS_FILE
    try:
        return bool(read_json(path).get('finished', False))
    except FileNotFoundError:
        return False
    except (OSError, ValueError, AttributeError) as e:
        log.warning('unreadable %s (%s): treating the run as unfinished', path, e)
        return False


def normalized_config(cfg: dict[str, Any]) -> Any:
    """`cfg` as it reads back from YAML (tuples -> lists), for comparison with stored configs."""
    return yaml.safe_load(yaml.safe_dump(cfg, sort_keys=False))


def stored_configs(exp_root: Path, exp_id: int) -> list[tuple[Path, dict[str, Any]]]:
    """(run folder, its config) for each run folder of experiment `exp_id`. A config file that
    cannot be read is skipped: one damaged folder must not hide the other runs."""
    parent = exp_dir(Path(exp_root), exp_id)
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        cfg_file = path / CONFIG_FILE
        if not cfg_file.is_file():
            continue
        try:
            found.append((path, load_config(cfg_file)))
        except (OSError, ValueError, yaml.YAMLError):
            continue
    return found


def age_key(run_dir: Path) -> tuple[str, float, str]:
    """Sort key, oldest first: folder names start with YYMMDD-HHMM and the config's mtime breaks
    ties within a minute."""
    return run_dir.name[:11], (run_dir / CONFIG_FILE).stat().st_mtime, run_dir.name


def same_config_dirs(cfg: dict[str, Any], exp_root: Path) -> list[Path]:
    """Run folders of cfg's experiment whose config.yaml equals `cfg`, newest first."""
    want = normalized_config(cfg)
    found = [path for path, stored in stored_configs(exp_root, cfg['exp']) if stored == want]
    return sorted(found, key=age_key, reverse=True)


def find_resumable(cfg: dict[str, Any], exp_root: Path) -> Path | None:
    """The newest unfinished run folder of the same experiment with exactly this config."""
    for path in same_config_dirs(cfg, exp_root):
        if not is_finished(path):
            return path
    return None


def find_finished(cfg: dict[str, Any], exp_root: Path) -> Path | None:
    """The newest finished run folder with exactly this config."""
    for path in same_config_dirs(cfg, exp_root):
        if is_finished(path):
            return path
    return None


def run_name_of(run_dir: Path) -> str:
    """The run name inside a folder name `<YYMMDD-HHMM>_<name>_<uid5>`."""
    return Path(run_dir).name[12:-6]


def unfinished_with_other_config(cfg: dict[str, Any], exp_root: Path) -> list[tuple[Path, str]]:
    """Unfinished folders named after this run whose config.yaml differs from `cfg` or cannot be
    read (an edited folder): (folder, what differs), newest first."""
    parent = exp_dir(exp_root, cfg['exp'])
    if not parent.is_dir():
        return []
    want = normalized_config(cfg)
    found = []
    for path in sorted(parent.iterdir(), key=lambda p: p.name, reverse=True):
        if not path.is_dir() or run_name_of(path) != cfg['name'] or is_finished(path):
            continue
        try:
            stored = load_config(path / CONFIG_FILE)
        except (OSError, ValueError, yaml.YAMLError) as err:
            found.append((path, f'an unreadable config.yaml ({str(err).splitlines()[0][:80]})'))
            continue
        if stored != want:
            keys = sorted(k for k in set(stored) | set(want) if stored.get(k) != want.get(k))
            found.append((path, f'a config.yaml that differs in {", ".join(keys)}'))
    return found
