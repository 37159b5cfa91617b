"""Names that become file paths: checked before any file is looked up (nothing outside the
project's folders may be reached, or executed, through a config value)."""
from __future__ import annotations

import re

_IDENTIFIER = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]*$')


def model_stem(name: str) -> str:
    """'mmseg.<stem>' or '<stem>' -> stem; ValueError unless the stem is a plain identifier
    (letters, digits, - and _), i.e. a file name under configs/models/, never a path."""
    stem = name[len('mmseg.'):] if name.startswith('mmseg.') else name
    if not _IDENTIFIER.match(stem):
        raise ValueError(f'model {name!r} is not a model name (letters, digits, - and _ after "mmseg.", no paths); '
                         'see configs/models/ for the available ones')
    return stem
