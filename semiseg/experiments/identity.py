"""When two run configs are the same run: canonical config keys for grouping and lookups.

A run folder is matched to a run by its `config.yaml`. Three levels of sameness:
- exact: every key equal (resume, `--status`);
- repeat: equal except the seed, the run name (it carries the seed) and the runtime engine options
  (workers, logging, device, ...); repeats are one row of `--results`, mean ± std over seeds;
- paper run: a repeat of a run of an experiment that reproduces a paper, also whatever experiment
  it sits in and wherever its data lives (`exp`, `sweep`, `data_root`); only such a run is compared
  with the paper's number (`semiseg.experiments.published`).

`config_key` turns a config into a short digest of its canonical JSON (keys sorted, tuples as lists,
as the config reads back from YAML), so thousands of folders are grouped with dict lookups instead
of pairwise dict comparisons, and the digests can be kept in a folder index
(`semiseg.launch.runindex`, which stores `KEY_SCHEME` to notice when these definitions change).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from semiseg.engine.options import RUNTIME_OPTIONS

REPEAT_FREE_KEYS = frozenset({'seed', 'name'}) | RUNTIME_OPTIONS
PAPER_FREE_KEYS = REPEAT_FREE_KEYS | {'exp', 'sweep', 'data_root'}


# what the keys below mean: a folder index made under other definitions recomputes its keys
KEY_SCHEME = (f'blake2b-16 compact sorted json; repeat-free {sorted(REPEAT_FREE_KEYS)}; '
              f'paper-free {sorted(PAPER_FREE_KEYS)}')


def config_key(cfg: dict[str, Any], drop: Iterable[str] = ()) -> str:
    """`cfg` without the top-level keys `drop`, as a digest of its canonical form (equal configs,
    equal keys)."""
    drop = frozenset(drop)
    kept = {k: v for k, v in cfg.items() if k not in drop}
    try:
        text = json.dumps(kept, sort_keys=True, separators=(',', ':'), check_circular=False)
    except TypeError:   # not JSON (non-string keys, other types): a YAML-like reading, still canonical
        text = repr(_plain(kept))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted(((repr(k), _plain(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def repeat_key(cfg: dict[str, Any]) -> str:
    """What repeats of a run share (REPEAT_FREE_KEYS left out)."""
    return config_key(cfg, REPEAT_FREE_KEYS)


def exact_key(cfg: dict[str, Any]) -> str:
    """The whole config."""
    return config_key(cfg)


def paper_key(cfg: dict[str, Any]) -> str:
    """What a run shares with the paper run it repeats (PAPER_FREE_KEYS left out)."""
    return config_key(cfg, PAPER_FREE_KEYS)
