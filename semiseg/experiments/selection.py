"""Which runs of an experiment to use: the `--run` spec (index, list, range or `all`)."""
from __future__ import annotations

import re

SPEC_HELP = 'use an index (0), a comma list (0,2), a range (1-3), a mix (0,2-4) or all'
_RANGE = re.compile(r'^(\d+)-(\d+)$')


class RunSpecError(ValueError):
    """A malformed or out-of-range `--run` value."""


def parse_run_spec(spec: str, n_runs: int, exp_id: int | None = None) -> list[int]:
    """Run indices selected by `spec`, in the given order without duplicates."""
    text = spec.strip()
    if text == 'all':
        return list(range(n_runs))
    if not text:
        raise RunSpecError(f'empty run spec; {SPEC_HELP}')
    indices: list[int] = []
    for token in (t.strip() for t in text.split(',')):
        match = _RANGE.match(token)
        if token.isdigit():
            chunk = [int(token)]
        elif match:
            lo, hi = int(match[1]), int(match[2])
            if lo > hi:
                raise RunSpecError(f'malformed run spec {spec!r}: range {token} runs backwards; {SPEC_HELP}')
            chunk = list(range(lo, hi + 1))
        else:
            raise RunSpecError(f'malformed run spec {spec!r}: {token!r} is not a run index; {SPEC_HELP}')
        for i in chunk:
            if i >= n_runs:
                which = f'experiment {exp_id}' if exp_id is not None else 'the experiment'
                raise RunSpecError(f'run {i} out of range: {which} has {n_runs} runs '
                                   f'(valid: 0-{n_runs - 1} or all)')
            if i not in indices:
                indices.append(i)
    return indices
