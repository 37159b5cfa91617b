"""One scan of an experiment's run folders for `--status` and `--results`, fast at thousands of folders.

Each folder's `config.yaml` is read once per call (not once per selected run), and its parsed config
is kept in `exp-E/.config-index.json` (folder name -> config.yaml's mtime and size, the config and its
identity keys), so the next call parses only folders that are new or whose config.yaml changed. The index is a cache:
entries are checked against the file's stat before use, a missing, damaged or unwritable index only
costs the parsing, and concurrent writers at worst drop each other's new entries.

Finished folders do not change (a finished run is never trained again), so `read_folder_files` keeps
what their results.json, state.json and slurm_job.json say in `exp-E/.finished-index.json`, checked
against the three files' stats (results.json without its per-class IoUs, which --status and
--results do not show): a finished sweep is then stat calls instead of reads.

Parsing: a config.yaml we wrote holds no YAML anchors or aliases, so when its text has none (no `&`
or `*` anywhere) it is read with libyaml's safe loader (about 10x faster than the pure-Python one)
after the same size and nesting checks as `semiseg.utils.safe_yaml`; any other text goes through
`safe_yaml.load_yaml_text` with its alias limits. Folders are grouped by canonical config strings
(`semiseg.experiments.identity`), so matching N runs to M folders is N + M dictionary operations.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from semiseg.experiments.identity import KEY_SCHEME, exact_key, repeat_key
from semiseg.utils.files import atomic_write_text
from semiseg.utils.run_files import CONFIG_FILE, JOB_FILE, RESULTS_FILE, STATE_FILE
from semiseg.utils.safe_yaml import MAX_DEPTH, MAX_YAML_BYTES, flow_depth, load_yaml_text, read_json
from semiseg.utils.textfiles import decode_text

from .rundir import exp_dir
from .status import FolderFiles

log = logging.getLogger(__name__)

INDEX_FILE = '.config-index.json'
FINISHED_FILE = '.finished-index.json'
PER_CLASS_KEYS = ('per_class_iou', 'best_per_class_iou')   # left out of the finished index
INDEX_VERSION = 1
_FAST_LOADER = getattr(yaml, 'CSafeLoader', None)


@dataclass
class RunFolder:
    """A run folder and its config, with the keys it is matched by."""

    path: Path
    config: dict[str, Any]
    mtime: float                # config.yaml's modification time (orders folders of the same minute)
    exact: str                  # identity.exact_key(config)
    repeat: str                 # identity.repeat_key(config)

    @property
    def age(self) -> tuple[str, float, str]:
        """Sort key, oldest first (as rundir.age_key): the folder's YYMMDD-HHMM, then the mtime."""
        return self.path.name[:11], self.mtime, self.path.name


def parse_config_text(text: str, source: str) -> Any:
    """A config.yaml's text as data: libyaml when the text can hold no alias, else the limited loader."""
    if _FAST_LOADER is None or '&' in text or '*' in text:
        return load_yaml_text(text, source)
    if len(text) > MAX_YAML_BYTES or flow_depth(text) > MAX_DEPTH:
        return load_yaml_text(text, source)     # refused there, with its message
    return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - libyaml's SafeLoader


def _read_config(path: str, size: int) -> dict[str, Any] | None:
    """The config in `path` (None when unreadable or not a mapping: one damaged folder must not hide
    the other runs)."""
    if size > MAX_YAML_BYTES:
        return None
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_YAML_BYTES + 1)
        cfg = parse_config_text(decode_text(data, path, 'run config'), str(path))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _load_index(parent: Path) -> dict[str, Any]:
    try:
        data = read_json(parent / INDEX_FILE, 'run-folder index')
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get('version') != INDEX_VERSION or data.get('keys') != KEY_SCHEME \
            or not isinstance(data.get('folders'), dict):
        return {}
    return data['folders']


def _save_index(parent: Path, folders: dict[str, Any]) -> None:
    text = json.dumps({'version': INDEX_VERSION, 'keys': KEY_SCHEME, 'folders': folders}, separators=(',', ':'))
    try:
        atomic_write_text(parent / INDEX_FILE, text)
    except OSError as err:   # a read-only experiment folder: the next call parses again
        log.debug('could not write %s (%s)', parent / INDEX_FILE, err)


def _json_safe(cfg: dict[str, Any]) -> bool:
    """Whether `cfg` survives a JSON round trip unchanged (string keys, plain values)."""
    try:
        return json.loads(json.dumps(cfg)) == cfg
    except (TypeError, ValueError):
        return False


def scan_run_folders(exp_root: Path, exp_id: int, use_index: bool = True) -> list[RunFolder]:
    """Every run folder of experiment `exp_id` with a readable config, oldest first."""
    parent = exp_dir(Path(exp_root), exp_id)
    try:
        entries = [e for e in os.scandir(parent) if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    cached = _load_index(parent) if use_index else {}
    index: dict[str, Any] = {}
    changed = False
    found = []
    for entry in entries:
        cfg_path = os.path.join(entry.path, CONFIG_FILE)
        try:
            st = os.stat(cfg_path)
        except OSError:
            continue
        hit = cached.get(entry.name)
        if isinstance(hit, dict) and hit.get('mtime_ns') == st.st_mtime_ns and hit.get('size') == st.st_size \
                and (hit.get('config') is None or isinstance(hit.get('config'), dict)
                     and isinstance(hit.get('exact'), str) and isinstance(hit.get('repeat'), str)):
            index[entry.name] = hit
        else:
            cfg = _read_config(cfg_path, st.st_size)
            hit = {'mtime_ns': st.st_mtime_ns, 'size': st.st_size, 'config': cfg}
            if cfg is not None:
                hit.update(exact=exact_key(cfg), repeat=repeat_key(cfg))
            changed = True
            if cfg is None or _json_safe(cfg):   # an unreadable config is remembered as such too
                index[entry.name] = hit
        if hit['config'] is None:
            continue
        found.append(RunFolder(Path(entry.path), hit['config'], st.st_mtime, hit['exact'], hit['repeat']))
    if use_index and (changed or len(index) != len(cached)):
        _save_index(parent, index)
    return sorted(found, key=lambda f: f.age)


def group_by(folders: list[RunFolder], key: str) -> dict[str, list[RunFolder]]:
    """Folders by `key` ('exact' or 'repeat'), each list oldest first."""
    groups: dict[str, list[RunFolder]] = {}
    for folder in folders:
        groups.setdefault(getattr(folder, key), []).append(folder)
    return groups


def _signature(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def _trimmed(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the per-class IoUs (also those of an EMA teacher under its name)."""
    out = {k: v for k, v in results.items() if k not in PER_CLASS_KEYS}
    for k, v in out.items():
        if isinstance(v, dict) and any(p in v for p in PER_CLASS_KEYS):
            out[k] = {kk: vv for kk, vv in v.items() if kk not in PER_CLASS_KEYS}
    return out


def read_folder_files(exp_root: Path, exp_id: int, paths: list[Path]) -> dict[Path, FolderFiles]:
    """`FolderFiles` of each run folder in `paths` (all of experiment `exp_id`): finished ones from
    the finished index while their files' stats are unchanged, the others read."""
    parent = exp_dir(Path(exp_root), exp_id)
    try:
        data = read_json(parent / FINISHED_FILE, 'finished-run index')
        cached = data['folders'] if isinstance(data, dict) and data.get('version') == INDEX_VERSION \
            and isinstance(data.get('folders'), dict) else {}
    except (OSError, ValueError):
        cached = {}
    index: dict[str, Any] = {}
    out: dict[Path, FolderFiles] = {}
    for path in paths:
        folder = str(path)
        sig = [_signature(os.path.join(folder, name)) for name in (RESULTS_FILE, STATE_FILE, JOB_FILE)]
        hit = cached.get(path.name)
        if isinstance(hit, dict) and hit.get('sig') == sig and isinstance(hit.get('results'), dict) \
                and isinstance(hit.get('state'), dict):
            out[path] = FolderFiles(hit['results'], hit['state'], hit.get('record'))
            index[path.name] = hit
            continue
        files = out[path] = FolderFiles.read(path)
        if files.results.get('finished') is True and sig[0] is not None:
            index[path.name] = {'sig': sig, 'results': _trimmed(files.results), 'state': files.state,
                                'record': files.record}
    asked = {path.name for path in paths}   # entries of folders not asked about stay while the folder exists
    merged = {**{name: entry for name, entry in cached.items() if name not in asked and (parent / name).is_dir()},
              **index}
    if merged != cached:
        text = json.dumps({'version': INDEX_VERSION, 'folders': merged}, separators=(',', ':'))
        try:
            atomic_write_text(parent / FINISHED_FILE, text)
        except OSError as err:
            log.debug('could not write %s (%s)', parent / FINISHED_FILE, err)
    return out
