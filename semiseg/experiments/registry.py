"""Experiment registry: experiment id -> ordered run configs."""
from __future__ import annotations

from typing import Any

from . import allspark, demo, semivl, unimatch, unimatch_v2
from .config import build_config
from .params import Experiment

_FAMILIES = (demo, unimatch, semivl, allspark, unimatch_v2)


class UnknownExperiment(KeyError):
    """An experiment id that no family defines."""


def _collect() -> dict[int, Experiment]:
    table: dict[int, Experiment] = {}
    for family in _FAMILIES:
        for exp in family.EXPERIMENTS:
            if exp.exp_id in table:
                raise RuntimeError(f'experiment {exp.exp_id} is defined twice ({family.__name__})')
            table[exp.exp_id] = exp
    return dict(sorted(table.items()))


EXPERIMENTS: dict[int, Experiment] = _collect()


def list_experiments() -> list[Experiment]:
    """All experiments, by id."""
    return list(EXPERIMENTS.values())


def get_experiment(exp_id: int) -> Experiment:
    """The experiment `exp_id`; the error lists the valid ids."""
    try:
        return EXPERIMENTS[exp_id]
    except KeyError:
        raise UnknownExperiment(f'unknown experiment {exp_id}; valid: '
                                f'{", ".join(map(str, EXPERIMENTS))}') from None


def get_runs(exp_id: int, data_root: str | None = None) -> list[dict[str, Any]]:
    """The run configs of experiment `exp_id`, index = run id.

    `data_root` is the folder holding the datasets (default: `SEMISEG_DATA` env, else `~/data`).
    """
    return [build_config(p, data_root) for p in get_experiment(exp_id).params()]
