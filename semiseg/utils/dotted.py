"""Dotted config keys (`optimizer.lr`): the value at such a key, read in one place."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dotted_get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """cfg's value at the dotted `key` (each part one mapping level down), else `default`."""
    node: Any = cfg
    for part in key.split('.'):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
