"""`--cfg-options key=value`: overrides of run-config keys and engine options, typed like the key.

A value is read as a YAML scalar or list and then coerced to the type of the value it replaces:
`split=8` is the string '8' (also `split=1_16`, which YAML would read as a number), `lr=1e-3` a
float, `epochs=2.0` the integer 2. A value that cannot be coerced names the key and the type it
needs. Dotted keys reach into nested dicts (`optimizer.lr=1e-3`); a key must already exist in the
config or be an engine option, so a typo fails loudly instead of being silently ignored. The one
exception is `model_args.<module>.<arg>`, settings merged into the model config (e.g. the AllSpark
release switches), which the model's constructor checks.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from semiseg.engine.options import ENGINE_OPTIONS, OPTIONS
from semiseg.methods.registry import METHODS
from semiseg.utils.safe_yaml import LimitedLoader, load_yaml_text

FREE_FORM = 'model_args'   # deep-merged into the model config: new nested keys are allowed
_NUMBER = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$')


class OverrideError(ValueError):
    """A malformed `--cfg-options` item, an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class Override:
    """One `key=value` item: the dotted key, the text as typed and its YAML reading."""

    key: str
    text: str
    value: Any


def parse_value(text: str) -> Any:
    """A YAML scalar or list; unquoted number-looking strings such as `1e-3` become floats."""
    try:
        node = yaml.compose(text, Loader=LimitedLoader)
        value = load_yaml_text(text, '--cfg-options value')
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


def parse_cfg_options(items: list[str]) -> list[Override]:
    """`['a.b=1', ...]` -> Overrides; raises OverrideError on malformed items."""
    parsed = []
    for item in items:
        key, sep, text = item.partition('=')
        key = key.strip()
        if not sep or not key or any(not part for part in key.split('.')):
            raise OverrideError(f'malformed --cfg-options item {item!r}; expected key=value, '
                                f'e.g. epochs=2 or optimizer.lr=1e-3')
        try:
            parsed.append(Override(key, text, parse_value(text)))
        except OverrideError as e:
            raise OverrideError(f'--cfg-options {item!r}: {e}') from None
    return parsed


def overrides_from_mapping(values: dict[str, Any], prefix: str = '') -> list[Override]:
    """Overrides from an already-parsed YAML mapping (an experiment file's `set`, a `runs` entry, a grid
    point): nested mappings become dotted keys (`{optimizer: {lr: 1e-3}}` is `optimizer.lr`)."""
    out: list[Override] = []
    for key, value in values.items():
        dotted = f'{prefix}{key}'
        if isinstance(value, dict) and value:
            out += overrides_from_mapping(value, dotted + '.')
        else:
            text = value.removesuffix('\n...').strip() if isinstance(value, str) else _yaml_text(value)
            out.append(Override(dotted, text, value))
    return out


_TEXTS: dict[tuple[type, str], str] = {}   # a sweep repeats each grid value once per seed


def _yaml_text(value: Any) -> str:
    """`value` written as YAML flow text (how the file would spell it), cached for scalars."""
    key = (type(value), repr(value)) if isinstance(value, (int, float, type(None))) else None
    if key in _TEXTS:
        return _TEXTS[key]
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('\n...').strip()
    if key is not None:
        _TEXTS[key] = text
    return text


def nearest(word: str, choices: list[str]) -> str:
    """'; did you mean X?' for the closest of `choices` (difflib), or ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ''


def _method_hint(key: str) -> str:
    owners = [m.name for m in METHODS.values() if key in m.config_keys or key in m.pseudo_label_keys
              or (key == 'epoch_over' and not m.uses_unlabeled)]
    if not owners:
        return ''
    return f' ({key} is read by method {" / ".join(owners)}: set method={owners[0]} in the same overrides)'


def _unquoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        return text[1:-1]
    return text


def coerce(key: str, old: Any, ov: Override) -> Any:
    """`ov`'s value as the type of `old` (the value it replaces); OverrideError when impossible."""
    new = ov.value
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
        want = 'true or false'
    elif isinstance(old, int):
        if isinstance(new, (int, float)) and not isinstance(new, bool) and float(new).is_integer():
            return int(new)
        if isinstance(new, list):       # keys that take a scalar or a list (e.g. [start, end])
            return new
        want = 'an integer'
    elif isinstance(old, float):
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return float(new)
        if isinstance(new, list):
            return new
        want = 'a number'
    elif isinstance(old, str):
        if isinstance(new, (str, int, float)) and not isinstance(new, bool):
            return _unquoted(ov.text)   # the text as typed: split=1_16 stays '1_16'
        want = 'a string'
    elif isinstance(old, list):
        if isinstance(new, list):
            return new
        if isinstance(new, (int, float)) and not isinstance(new, bool):
            return new                  # e.g. maskclip_consistency_lambda: [0.1, 0] -> 0.1
        want = 'a list like [1, 2]'
    else:
        return new
    raise OverrideError(f'--cfg-options {key}={ov.text}: {key} expects {want} (current value {old!r})')


def _option_value(ov: Override) -> Any:
    """An engine option's value as the type of its default; 'auto' or an integer where it takes both."""
    if OPTIONS[ov.key].or_auto:
        return 'auto' if ov.value == 'auto' else coerce(ov.key, 0, ov)
    return coerce(ov.key, ENGINE_OPTIONS[ov.key], ov)


def apply_overrides(cfg: dict[str, Any], overrides: list[Override]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`cfg` with `overrides` applied, {dotted key: new value} of what changed).

    `cfg` is left unchanged: the result is a new top-level dict in which only the mappings on an
    overridden key's path are copied; untouched subtrees are shared with `cfg` (building a
    2,000-run sweep no longer deep-copies the whole config per step, issue 21 item 9)."""
    out = dict(cfg)
    changed: dict[str, Any] = {}
    for ov in overrides:
        parts = ov.key.split('.')
        if len(parts) == 1 and ov.key in ENGINE_OPTIONS:   # set in place when the config has it
            value = _option_value(ov)
            if value != out.get(ov.key, ENGINE_OPTIONS[ov.key]):
                changed[ov.key] = value
            out[ov.key] = value
            continue
        node: Any = out
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth])
            if not isinstance(node, dict):
                raise OverrideError(f'unknown config key {ov.key!r}: {where} is not a mapping')
            if part not in node and parts[0] == FREE_FORM and depth > 0:
                if depth == len(parts) - 1:   # a new model-config setting: its constructor checks it
                    node[part] = ov.value
                    changed[ov.key] = ov.value
                    break
                node[part] = {}
            if part not in node:
                choices = list(node) + ([k for k in ENGINE_OPTIONS if k not in node] if depth == 0 else [])
                scope = f'under {where!r}' if where else 'in the config or the engine options'
                hint = _method_hint(ov.key) if depth == 0 else ''
                raise OverrideError(f'unknown config key {ov.key!r}{hint or nearest(part, choices)}; valid keys '
                                    f'{scope}: {", ".join(choices)}')
            if depth == len(parts) - 1:
                value = coerce(ov.key, node[part], ov)
                if value != node[part]:
                    changed[ov.key] = value
                node[part] = value
            else:
                if isinstance(node[part], dict):   # copied before it is written into
                    node[part] = dict(node[part])
                node = node[part]
    return out, changed
