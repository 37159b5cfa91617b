"""The run config the engine accepts: `validate_config` names the first key that cannot work.

The engine's own input contract, so that `python -m semiseg.engine.run` checks an edited
config.yaml without importing the experiments layer above it (docs/ARCHITECTURE.md, the import
order); `semiseg.experiments.config` re-exports it and checks every config it generates.
Torch-free: the CLI validates runs without importing torch.
"""
from __future__ import annotations

from typing import Any

from semiseg.engine.options import check_options
from semiseg.methods.registry import METHODS, method_info
from semiseg.utils.labels import IGNORE_INDEX, MAX_CLASSES, UNLABELED_PAD
from semiseg.utils.model_registry import model_info
from semiseg.utils.names import model_stem

EPOCH_OVER = ('labeled', 'unlabeled')
# the AllSpark decoder's switch for its paper's supervised baseline (MiT + SegFormer head, no AllSpark
# module: xmed-lab/AllSpark `model/semseg/semidec_base.py`, configs/*_baseline_sup.yaml)
ALLSPARK_SWITCH = 'with_allspark'


def _allspark_module_on(cfg: dict[str, Any]) -> bool:
    head = (cfg.get('model_args') or {}).get('decode_head') or {}
    return model_info(cfg['model']).allspark and head.get(ALLSPARK_SWITCH, True) is not False


def method_model_problem(cfg: dict[str, Any]) -> str | None:
    """Why `cfg['method']` cannot train `cfg['model']` (None when it can), said before anything runs."""
    method, model = cfg['method'], str(cfg['model'])
    allspark_on = _allspark_module_on(cfg)
    if method == 'allspark' and not allspark_on:
        return (f"method allspark needs the AllSpark decoder with its module (a model mmseg.allspark-*, "
                f"without model_args.decode_head.{ALLSPARK_SWITCH}=false); {model} has none")
    if allspark_on and method != 'allspark':
        fix = ('set model_args.decode_head.with_allspark=false (the paper\'s supervised baseline: the SegFormer '
               'head without the AllSpark module)' if method == 'supervised' else
               'use method=allspark, or method=supervised for the paper\'s supervised baseline (MiT + SegFormer '
               'head without the AllSpark module)')
        return (f'method {method} cannot train {model}: the AllSpark decoder\'s train forward needs the allspark '
                f'method\'s eval-mode logits of the unlabeled batch; {fix}')
    lam = cfg.get('maskclip_consistency_lambda') or 0
    guided = any(lam) if isinstance(lam, (list, tuple)) else lam != 0
    guidance = model_info(model).vision_language and cfg.get('clip_encoder')
    if guided and method in ('semivl', 'unimatch_v2') and not guidance:
        return (f'maskclip_consistency_lambda is {lam!r} but {model} has no MaskCLIP guidance encoder (a '
                'vision-language model mmseg.vlm-*/zegclip-* with clip_encoder set); set '
                'maskclip_consistency_lambda=0')
    return None


def validate_config(cfg: dict[str, Any], lookup_method=method_info) -> None:
    """Raise ValueError naming the first key whose value cannot work (before any file is written).

    `lookup_method` resolves cfg['method'] (the method registry; engine.run passes its TrainerParts', which
    tests replace with stand-ins)."""
    def positive_int(key: str, allow_none: bool = False) -> None:
        value = cfg.get(key)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{key} must be a whole number >= 1, got {value!r}')

    lookup_method(cfg['method'])
    model_stem(str(cfg['model']))
    problem = method_model_problem(cfg) if cfg['method'] in METHODS else None   # (tests: stand-in methods)
    if problem:
        raise ValueError(problem)
    for key in ('crop_size', 'batch_size', 'n_gpus', 'n_nodes', 'nclass'):
        positive_int(key)
    if cfg['nclass'] > MAX_CLASSES:
        raise ValueError(f'nclass={cfg["nclass"]} collides with the reserved label ids {UNLABELED_PAD} (padding) '
                         f'and {IGNORE_INDEX} (ignore): at most {MAX_CLASSES} classes are supported')
    positive_int('epochs', allow_none=True)
    positive_int('iters', allow_none=True)
    if cfg.get('epochs') is None and cfg.get('iters') is None:
        raise ValueError('set epochs (or iters) to a whole number >= 1')
    lr = cfg['optimizer']['lr'] if isinstance(cfg.get('optimizer'), dict) else cfg.get('lr')
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f'the learning rate must be a number > 0, got {lr!r}')
    thresh = cfg.get('conf_thresh')
    if thresh is not None and not 0 <= thresh <= 1:
        raise ValueError(f'conf_thresh must be in [0, 1], got {thresh!r}')
    if cfg.get('epoch_over', 'labeled') not in EPOCH_OVER:
        raise ValueError(f'epoch_over must be one of {", ".join(EPOCH_OVER)}, got {cfg["epoch_over"]!r}')
    check_options(cfg)
