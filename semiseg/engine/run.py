"""`python -m semiseg.engine.run --run-dir DIR`: train the run whose config is DIR/config.yaml.

The entry point of torchrun and subprocess launches; distributed settings come from the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Exit codes: 0 finished,
1 failed (one-line error; the traceback is in DIR/train.log), 3 interrupted (resume with the same
command), 130 aborted by a second Ctrl-C.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml

from semiseg.utils.cli import EXIT_ABORTED, EXIT_FAILED, EXIT_INTERRUPTED, OneLineParser
from semiseg.utils.run_files import CONFIG_FILE


def read_config(run_dir: Path) -> dict:
    """DIR/config.yaml as a dict, with a clear error when it is missing or malformed."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: --run-dir must be a run folder created by '
                                f'experiments.py (it writes config.yaml)')
    try:
        from semiseg.utils.safe_yaml import read_yaml
        cfg = read_yaml(path, 'run config')
    except yaml.YAMLError as e:
        raise ValueError(f'{path} is not valid YAML: {e}') from None
    if not isinstance(cfg, dict):
        raise ValueError(f'{path} must hold a mapping of config keys, got {type(cfg).__name__}')
    return cfg


def main(argv: list[str] | None = None, parts=None) -> int:
    """Entry point; `parts` (a TrainerParts) replaces the real builders (tests)."""
    parser = OneLineParser(prog='python -m semiseg.engine.run', description=__doc__.splitlines()[0])
    parser.add_argument('--run-dir', required=True, type=Path, help='run folder holding config.yaml')
    args = parser.parse_args(argv)
    from semiseg.engine.signals import StopBeforeTraining, mark_interrupted, startup_stop_handlers
    run_dir = args.run_dir.expanduser()
    try:
        with startup_stop_handlers():   # before the slow imports: a stop from here on exits 3
            from semiseg.engine.logging_utils import LOG_FORMAT
            logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt='%Y-%m-%d %H:%M:%S')
            return _train_run_dir(run_dir, parts)
    except StopBeforeTraining as stop:
        mark_interrupted(run_dir, str(stop))
        print(f'interrupted ({stop}) outside the training loop; the same command resumes', file=sys.stderr)
        return EXIT_INTERRUPTED


def _train_run_dir(run_dir: Path, parts) -> int:
    """Train the run folder; returns the exit code (a stop outside the loop raises StopBeforeTraining)."""
    from semiseg.engine import TrainingInterrupted, train
    from semiseg.engine.config_check import validate_config
    from semiseg.methods.registry import method_info
    from semiseg.utils.errors import failure_message
    try:
        cfg = read_config(run_dir)
        validate_config(cfg, parts.method_info if parts else method_info)   # an edited config.yaml is checked first
        train(cfg, run_dir, parts)
    except TrainingInterrupted as e:
        print(f'interrupted: {e}', file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print('aborted by a second Ctrl-C; latest.pth resumes it', file=sys.stderr)
        return EXIT_ABORTED
    except Exception as e:  # noqa: BLE001 - one line; the traceback is in train.log
        print(f'error: {failure_message(e, run_dir)}', file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == '__main__':
    sys.exit(main())
