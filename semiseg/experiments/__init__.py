"""Experiment registry: experiment id -> fully specified run configs, their names and YAML files."""
from .config import build_config, dataset_folder, datasets_root, validate_config, with_overrides, with_world
from .io import dump_config, load_config, load_release_config, write_config
from .naming import humanize, run_name
from .params import Experiment, RunParams, make_params
from .registry import get_experiment, get_runs, list_experiments

__all__ = [
    'Experiment', 'RunParams', 'build_config', 'dataset_folder', 'dump_config',
    'get_experiment', 'get_runs', 'humanize', 'list_experiments', 'load_config',
    'load_release_config', 'make_params', 'datasets_root', 'run_name', 'validate_config',
    'with_overrides', 'with_world', 'write_config',
]
