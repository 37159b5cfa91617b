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
    or_auto: bool = False            # an integer (>= minimum) or 'auto'; '4' as typed counts as 4


OPTIONS: dict[str, Option] = {
    'seed': Option(0, 'python / numpy / torch seed; samplers and augmentations derive from it', minimum=0),
    'precision': Option('fp32', "'fp32' (faithful to the releases), 'tf32' (fp32 with TF32 matmuls on "
                        "Ampere+ GPUs) or 'bf16' (autocast)", choices=('fp32', 'tf32', 'bf16')),
    'num_workers': Option('auto', "dataloader workers per loader: 'auto' (from the CPUs this process may use, "
                          "see semiseg.engine.loaders.auto_workers) or a number (the releases use 1)",
                          minimum=0, runtime=True, or_auto=True),
    'log_every': Option(100, 'iterations between log lines and tensorboard train scalars', minimum=1,
                        runtime=True),
    'ckpt_every': Option(0, 'iterations between latest.pth saves; 0 = only at epoch end', minimum=0,
                         runtime=True),
    'debug_every_epoch': Option(True, 'debug panels at the first iteration of every epoch',
                                choices=(True, False), runtime=True),
    'max_debug_images': Option(2, 'debug panels written per occasion', minimum=0, runtime=True),
    'device': Option('auto', "'auto' (cuda when available), 'cpu' or 'cuda'",
                     choices=('auto', 'cpu', 'cuda'), runtime=True),
    'compile': Option(False, 'torch.compile the model (and the guidance encoder) before training',
                      choices=(True, False), runtime=True),
    'grad_checkpointing': Option(False, 'recompute the ViT blocks in the backward pass: less memory, same '
                                 'gradients', choices=(True, False), runtime=True),
    'channels_last': Option(False, 'channels_last memory format for the convolutional heads',
                            choices=(True, False), runtime=True),
    'fused_optimizer': Option('auto', "AdamW's fused CUDA kernel: 'auto' (when every parameter is on CUDA), "
                              "'on' or 'off'", choices=('auto', 'on', 'off'), runtime=True),
    'eval_max_windows': Option(0, 'sliding-window evaluation: windows per forward (0: as many as fit a '
                               'default memory budget for models whose outputs are per image)', minimum=0,
                               runtime=True),
    'scale_lr': Option('none', "'linear': scale the learning rate with the actual global batch over the "
                       "configured one (MMEngine's auto_scale_lr rule) when --ngpus / --nodes change it",
                       choices=('none', 'linear')),
    'clip_weights': Option(None, 'local CLIP ViT-B/16 checkpoint (default: $SEMISEG_CLIP_WEIGHTS, the '
                           "release's pretrained/ViT-B-16.pt, else the open_clip download)", runtime=True),
    'augment': Option('release', "augmentation kernels: 'release' (the release's pixels exactly) or 'fast' (the "
                      'same draws with OpenCV / lookup kernels; semiseg/data/photometric.py)',
                      choices=('release', 'fast')),
    'photometric_device': Option(False, "the strong views' jitter, grayscale and blur as batched ops on the "
                                 'training device, parameters drawn on the CPU (semiseg/data/device_photometric.py)',
                                 choices=(True, False)),
}
ENGINE_OPTIONS: dict[str, Any] = {k: o.default for k, o in OPTIONS.items()}
RUNTIME_OPTIONS = frozenset(k for k, o in OPTIONS.items() if o.runtime)


def option(cfg: dict, key: str) -> Any:
    """The value of engine option `key` in `cfg`, or its default."""
    if key not in OPTIONS:
        raise KeyError(f'unknown engine option {key!r}; known: {", ".join(OPTIONS)}')
    value = cfg.get(key, OPTIONS[key].default)
    if OPTIONS[key].or_auto and isinstance(value, str) and value != 'auto':
        return int(value)     # validated by option_problem
    return value


def option_problem(key: str, value: Any) -> str | None:
    """Why `value` is not valid for engine option `key` (None when it is)."""
    spec = OPTIONS[key]
    if spec.or_auto:
        if value == 'auto':
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < (spec.minimum or 0):
            return f"engine option {key} must be 'auto' or an integer >= {spec.minimum or 0:g}, got {value!r}"
        return None
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
