"""The one way we read YAML and JSON: safe tags only, with limits on size, aliases and nesting.

`yaml.safe_load` runs no code, but a few hundred bytes of nested aliases ("billion laughs") expand
to billions of nodes, and a config holding one ran for half a minute and ended in MemoryError.
`LimitedLoader` counts alias uses while composing and the expanded node count before constructing,
so such a file is refused in milliseconds; a byte cap and a nesting cap do the same for huge or
deeply nested files (YAML and JSON). Text goes through `semiseg.utils.textfiles` (BOM, line endings).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from semiseg.utils.textfiles import TextFileError, decode_text, read_bytes_capped

MAX_YAML_BYTES = 4 * 1024 * 1024     # our configs are a few kB; a results table a few hundred kB
MAX_JSON_BYTES = 32 * 1024 * 1024    # state / results / job files; attempts logs stay far below
MAX_ALIASES = 10_000                 # alias uses (`*name`) in one document
MAX_NODES = 1_000_000                # nodes after expanding every alias
MAX_DEPTH = 200                      # nesting of mappings / lists


class FileLimitError(TextFileError):
    """A YAML/JSON file over one of the limits above (size, aliases, expansion, nesting)."""


class YamlLimitError(FileLimitError, yaml.YAMLError):
    """A YAML document over a limit; also a YAMLError, so callers that wrap parse errors wrap it too."""


class LimitedLoader(yaml.SafeLoader):
    """SafeLoader that refuses alias bombs, self-referencing anchors and very deep nesting."""

    source = '<string>'

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.alias_uses = 0
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.depth >= MAX_DEPTH:
            raise YamlLimitError(f'{self.source} is nested more than {MAX_DEPTH} levels deep')
        if self.check_event(yaml.AliasEvent):
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIASES:
                raise YamlLimitError(f'{self.source} uses more than {MAX_ALIASES} YAML aliases (*name); '
                                     f'refused as a possible alias bomb')
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        expanded_size(node, self.source)
        return super().construct_document(node)


def expanded_size(root: yaml.Node, source: str) -> int:
    """Number of nodes `root` stands for with every alias expanded; refused over the limits."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YamlLimitError(f'{source} holds an anchor that refers to itself; configs are plain trees')
        if depth > MAX_DEPTH:
            raise YamlLimitError(f'{source} is nested more than {MAX_DEPTH} levels deep')
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise YamlLimitError(f'{source} expands to more than {MAX_NODES} YAML nodes through its aliases; '
                                 f'refused as a possible alias bomb')
        sizes[key] = total
        return total

    return size(root, 0)


def flow_depth(text: str) -> int:
    """Deepest nesting of `[`/`{` (brackets inside quotes count too: an upper bound, cheap)."""
    if text.count('[') + text.count('{') <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    for char in text:
        if char in '[{':
            depth += 1
            deepest = max(deepest, depth)
        elif char in ']}':
            depth = max(depth - 1, 0)
    return deepest


def load_yaml_text(text: str, source: str = '<string>', loader: type[LimitedLoader] = LimitedLoader) -> Any:
    """Parse one YAML document with `loader` (LimitedLoader or a subclass of it)."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlLimitError(f'{source} is over the limit of {MAX_YAML_BYTES} bytes for a YAML file')
    if flow_depth(text) > MAX_DEPTH:   # the scanner is quadratic in flow depth: refuse before it runs
        raise YamlLimitError(f'{source} is nested more than {MAX_DEPTH} levels deep')
    bound = type(loader.__name__, (loader,), {'source': source})
    try:
        return yaml.load(text, Loader=bound)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlLimitError(f'{source} is nested too deeply to be a config') from None


def read_yaml(path: str | os.PathLike, what: str = '', loader: type[LimitedLoader] = LimitedLoader,
              max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Read a YAML file safely: UTF-8 (BOM optional), at most `max_bytes`, no alias bombs."""
    path = Path(path)
    label = f'{what} {path}' if what else str(path)
    text = decode_text(read_bytes_capped(path, what, max_bytes), path, what)
    return load_yaml_text(text, label, loader)


def load_json_text(text: str, source: str = '<string>') -> Any:
    """Parse JSON text; very deep nesting is refused instead of overflowing the stack."""
    if len(text) > MAX_JSON_BYTES:
        raise FileLimitError(f'{source} is over the limit of {MAX_JSON_BYTES} bytes for a JSON file')
    try:
        return json.loads(text)
    except RecursionError:
        raise FileLimitError(f'{source} is nested too deeply to be one of our JSON files') from None


def read_json(path: str | os.PathLike, what: str = '', max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON file safely: UTF-8 (BOM optional), at most `max_bytes`."""
    path = Path(path)
    label = f'{what} {path}' if what else str(path)
    return load_json_text(decode_text(read_bytes_capped(path, what, max_bytes), path, what), label)
