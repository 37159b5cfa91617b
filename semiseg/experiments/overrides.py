"""`--cfg-options key=value`: validated overrides of run-config keys and engine options.

Values are YAML scalars or lists (`1e-3` counts as a number, unlike plain YAML 1.1); dotted keys
reach into nested dicts (`optimizer.lr=1e-3`). A key must already exist in the config or be an
engine option, so a typo fails loudly instead of being silently ignored.
"""
from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from .schema import ENGINE_OPTIONS

_NUMBER = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$')


class OverrideError(ValueError):
    """A malformed `--cfg-options` item or one naming an unknown key."""


def parse_value(text: str) -> Any:
    """A YAML scalar or list; unquoted number-looking strings such as `1e-3` become floats."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise OverrideError(f'cannot parse value {text!r} as YAML ({first})') from None
    if isinstance(value, dict):
        raise OverrideError(f'value {text!r} is a mapping; set nested keys one by one with dotted keys '
                            f'(e.g. optimizer.lr=1e-3)')

    def plain_number(n: yaml.Node | None, v: Any) -> bool:
        # YAML 1.1 reads 1e-3 as a string; only plain (unquoted) scalars are converted
        return isinstance(n, yaml.ScalarNode) and n.style is None and isinstance(v, str) \
            and bool(_NUMBER.match(v))

    if plain_number(node, value):
        return float(value)
    if isinstance(value, list) and isinstance(node, yaml.SequenceNode):
        return [float(v) if plain_number(n, v) else v for n, v in zip(node.value, value)]
    return value


def parse_cfg_options(items: list[str]) -> list[tuple[str, Any]]:
    """`['a.b=1', ...]` -> `[('a.b', 1), ...]`; raises OverrideError on malformed items."""
    parsed = []
    for item in items:
        key, sep, text = item.partition('=')
        key = key.strip()
        if not sep or not key or any(not part for part in key.split('.')):
            raise OverrideError(f'malformed --cfg-options item {item!r}; expected key=value, '
                                f'e.g. epochs=2 or optimizer.lr=1e-3')
        try:
            parsed.append((key, parse_value(text)))
        except OverrideError as e:
            raise OverrideError(f'--cfg-options {item!r}: {e}') from None
    return parsed


def _check_type(key: str, old: Any, new: Any) -> None:
    """Reject overrides whose type clearly cannot replace the current value."""
    if old is None or new is None:
        return
    if isinstance(old, bool):
        ok = isinstance(new, bool)
        want = 'true or false'
    elif isinstance(old, (int, float)):
        # lists too: some keys take a scalar or a [start, end] pair (maskclip_consistency_lambda)
        ok = isinstance(new, (int, float, list)) and not isinstance(new, bool)
        want = 'a number'
    elif isinstance(old, str):
        ok = isinstance(new, str)
        want = 'a string'
    else:
        return
    if not ok:
        raise OverrideError(f'--cfg-options {key}={new!r}: {key} expects {want} (current value {old!r})')


def apply_overrides(cfg: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """A copy of `cfg` with `overrides` applied; unknown keys raise OverrideError."""
    out = copy.deepcopy(cfg)
    for key, value in overrides:
        parts = key.split('.')
        if len(parts) == 1 and key not in out and key in ENGINE_OPTIONS:
            _check_type(key, ENGINE_OPTIONS[key], value)
            out[key] = value
            continue
        node: Any = out
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth])
            if not isinstance(node, dict):
                raise OverrideError(f'unknown config key {key!r}: {where} is not a mapping')
            if part not in node:
                choices = list(node) + ([k for k in ENGINE_OPTIONS if k not in node] if depth == 0 else [])
                scope = f'under {where!r}' if where else 'in the config or the engine options'
                raise OverrideError(f'unknown config key {key!r}; valid keys {scope}: {", ".join(choices)}')
            if depth == len(parts) - 1:
                _check_type(key, node[part], value)
                node[part] = value
            else:
                node = node[part]
    return out
