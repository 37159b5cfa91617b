"""Engine options: how a run is executed, as opposed to what is trained.

A run config may carry any of these keys; when it does not, the engine uses the default here
(`option(cfg, key)`). The SemiVL configs (exps 40-44) must equal the release's, so they never
carry them; `--cfg-options` may set any of them. `check_options` validates values before a run
folder is made. Options marked `runtime` do not change what is learned (they are left out of the
run name's override hash).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    default: Any
    doc: str
    choices: tuple | None = None     # allowed values (enums)
    minimum: float | None = None     # numeric lower bound (inclusive)
    runtime: bool = False            # True: changes how fast / where, not what is learned


OPTIONS: dict[str, Option] = {
    'seed': Option(0, 'python / numpy / torch seed; samplers and augmentations derive from it', minimum=0),
    'precision': Option('fp32', "'fp32' (faithful to the releases) or 'bf16' autocast",
                        choices=('fp32', 'bf16')),
    'num_workers': Option(1, 'dataloader workers per process (the releases use 1)', minimum=0, runtime=True),
    'log_every': Option(100, 'iterations between log lines and tensorboard train scalars', minimum=1,
                        runtime=True),
    'ckpt_every': Option(0, 'iterations between latest.pth saves; 0 = only at epoch end', minimum=0,
                         runtime=True),
    'debug_every_epoch': Option(True, 'debug panels at the first iteration of every epoch',
                                choices=(True, False), runtime=True),
    'max_debug_images': Option(2, 'debug panels written per occasion', minimum=0, runtime=True),
    'device': Option('auto', "'auto' (cuda when available), 'cpu' or 'cuda'",
                     choices=('auto', 'cpu', 'cuda'), runtime=True),
    'clip_weights': Option(None, 'local CLIP ViT-B/16 checkpoint (default: $SEMISEG_CLIP_WEIGHTS, the '
                           "release's pretrained/ViT-B-16.pt, else the open_clip download)", runtime=True),
}
ENGINE_OPTIONS: dict[str, Any] = {k: o.default for k, o in OPTIONS.items()}
RUNTIME_OPTIONS = frozenset(k for k, o in OPTIONS.items() if o.runtime)


def option(cfg: dict, key: str) -> Any:
    """The value of engine option `key` in `cfg`, or its default."""
    if key not in OPTIONS:
        raise KeyError(f'unknown engine option {key!r}; known: {", ".join(OPTIONS)}')
    return cfg.get(key, OPTIONS[key].default)


def option_problem(key: str, value: Any) -> str | None:
    """Why `value` is not valid for engine option `key` (None when it is)."""
    spec = OPTIONS[key]
    if spec.default is None:   # a path or name, or unset
        return None if value is None or isinstance(value, str) else f'engine option {key} must be a string'
    if spec.choices is not None:
        if value not in spec.choices or (isinstance(value, bool) != isinstance(spec.choices[0], bool)):
            return f'engine option {key} must be one of {", ".join(map(repr, spec.choices))}, got {value!r}'
        return None
    if isinstance(spec.default, int) and not isinstance(spec.default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            return f'engine option {key} must be an integer, got {value!r}'
    if spec.minimum is not None and value < spec.minimum:
        return f'engine option {key} must be at least {spec.minimum:g}, got {value!r}'
    return None


def check_options(cfg: dict) -> None:
    """Raise ValueError naming the first engine option of `cfg` whose value is invalid."""
    for key in OPTIONS:
        if key in cfg:
            problem = option_problem(key, cfg[key])
            if problem:
                raise ValueError(problem)
