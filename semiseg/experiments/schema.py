"""Engine options: keys a run config may carry, with the defaults the engine falls back to.

The SemiVL configs (exps 40-44) must equal the release's, so they never carry these keys; the
engine reads them with `option(cfg, key)`. `--cfg-options` may set any of them.
"""
from typing import Any

ENGINE_OPTIONS: dict[str, Any] = {
    'seed': 0,                  # python / numpy / torch seed; samplers derive from it
    'precision': 'fp32',        # 'fp32' (faithful to the release) or 'bf16' autocast
    'num_workers': 1,           # dataloader workers per process (the release uses 1)
    'log_every': 100,           # iterations between log lines and tensorboard train scalars
    'ckpt_every': 0,            # iterations between latest.pth saves; 0 = only at epoch end
    'debug_every_epoch': True,  # debug panels at the first iteration of every epoch
    'max_debug_images': 2,      # debug panels written per occasion
    'device': 'auto',           # 'auto' (cuda when available), 'cpu' or 'cuda'
}


def option(cfg: dict, key: str) -> Any:
    """The value of engine option `key` in `cfg`, or its default."""
    if key not in ENGINE_OPTIONS:
        raise KeyError(f'unknown engine option {key!r}; known: {", ".join(ENGINE_OPTIONS)}')
    return cfg.get(key, ENGINE_OPTIONS[key])
