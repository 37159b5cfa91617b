"""Run config: RunParams -> the ordered config dict, and `--cfg-options` applied to it.

Insertion order is the YAML order. For exps 40-44 the result equals the release's generated
config key for key (data_root and version aside; google-research/semivl `experiments.py`,
`generate_experiment_cfgs`). Tuples become lists so that `yaml.safe_dump` can write the config.
Dataset facts come from the dataset registry (`semiseg.data.datasets`), method facts from the
method registry (`semiseg.methods.registry`); the name is read off the finished config.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import semiseg
from semiseg.data.datasets import DATASETS, dataset_info
from semiseg.data.errors import DataError
from semiseg.engine.config_check import ALLSPARK_SWITCH, validate_config
from semiseg.methods.registry import METHODS, method_info
from semiseg.utils.dotted import dotted_get
from semiseg.utils.labels import IGNORE_INDEX
from semiseg.utils.model_registry import model_info

from .naming import override_suffix, run_name
from .overrides import Override, apply_overrides
from .params import RunParams, default_lr_multi

DATA_ROOT_ENV = 'SEMISEG_DATA'
DEFAULT_DATA_ROOT = '~/data'
ZSW_STRIDE = 426
OHEM_KWARGS = {'thresh': 0.7, 'min_kept': 200000}
PRE_DROPOUT_PSEUDO_KEYS = ('use_fp', 'conf_mode', 'conf_thresh')
# every key that belongs to some method (the block between `method` and `fp_rate`, disable_dropout aside)
METHOD_KEYS = frozenset({*PRE_DROPOUT_PSEUDO_KEYS, 'pleval', 'epoch_over'}
                        | {k for info in METHODS.values() for k in info.config_keys})
_HASH = re.compile(r'_h[0-9a-f]{6}$')


def datasets_root(cli_value: str | None = None) -> str:
    """The folder holding the datasets: `--data-root` flag > `SEMISEG_DATA` env > `~/data`.

    `~` stays unexpanded (the release writes `~/data/...`; readers expand it); a relative path
    becomes absolute so that jobs started from another folder (Slurm) find the same data.
    """
    root = str(cli_value or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)
    if not root.startswith('~'):
        root = os.path.abspath(root)
    return root.rstrip('/') or '/'


def dataset_folder(dataset: str, data_root: str | None = None) -> str:
    """A dataset's folder under the datasets root, with a trailing slash like the release.

    Built-in datasets use their registry folder (pascal -> voc/); a custom dataset its own name.
    """
    folder = DATASETS[dataset].folder if dataset in DATASETS else dataset
    if not folder or '/' in folder or folder in ('.', '..'):
        raise ValueError(f'dataset name {dataset!r} cannot name a folder; use letters, digits, - and _')
    return f'{datasets_root(data_root).rstrip("/")}/{folder}/'


def dataset_class_count(dataset: str, folder: str) -> int:
    """nclass of a built-in dataset, or the class count of a custom one's classes.txt."""
    if dataset in DATASETS:
        return DATASETS[dataset].nclass
    try:
        return dataset_info(dataset, Path(folder).expanduser()).nclass
    except DataError as err:
        raise ValueError(f'custom dataset {dataset!r}: {err}') from None


def _optimizer_keys(p: RunParams) -> dict[str, Any]:
    if p.opt == 'adamw':
        return {'optimizer': {
            'type': 'AdamW',
            'lr': p.lr,
            'weight_decay': 0.01,
            'paramwise_cfg': {'custom_keys': {
                'backbone': {'lr_mult': p.backbone_lr_mult},
                'text_encoder': {'lr_mult': 0.0},
                'conv_encoder': {'lr_mult': p.conv_enc_lr_mult},
                'norm': {'decay_mult': 0.0},
                'ln': {'decay_mult': 0.0},
                'head': {'lr_mult': 10.0},
            }},
        }}
    lr_multi = p.lr_multi if p.lr_multi is not None else default_lr_multi(p.dataset)
    if p.opt == 'original':
        return {'lr': p.lr, 'lr_multi': lr_multi}
    if p.opt == 'adamw2':   # LiheYoung/UniMatch-V2 unimatch_v2.py: [backbone at lr, the rest at lr * lr_multi]
        return {'optimizer': {'type': 'AdamW', 'lr': p.lr, 'weight_decay': 0.01,
                              'paramwise_cfg': {'custom_keys': {'decode_head': {'lr_mult': lr_multi}}}}}
    raise ValueError(f'unknown optimizer {p.opt!r}; choices: adamw, adamw2, original')


def build_config(p: RunParams, data_root: str | None = None) -> dict[str, Any]:
    """The run config of `p` with keys in the release's order (google-research/semivl `experiments.py`)."""
    folder = dataset_folder(p.dataset, data_root)
    cfg: dict[str, Any] = {'dataset': p.dataset, 'data_root': folder,
                           'nclass': dataset_class_count(p.dataset, folder)}
    if p.dataset in DATASETS and DATASETS[p.dataset].reduce_zero_label:
        cfg['reduce_zero_label'] = True
    cfg['split'] = p.split
    cfg['img_scale'] = list(p.img_scale) if p.img_scale is not None else None
    cfg['scale_ratio_range'] = list(p.scale_ratio_range)
    cfg['crop_size'] = p.crop_size
    cfg['labeled_photometric_distortion'] = p.labeled_photometric_distortion

    model_args: dict[str, Any] = copy.deepcopy(p.model_args)
    cfg['model_args'] = model_args
    cfg['model'] = p.model
    cfg['text_embedding_variant'] = p.text_embedding_variant
    cfg['mcc_text'] = p.text_embedding_variant if p.mcc_text == 'same' else p.mcc_text
    cfg['pl_text'] = p.text_embedding_variant if p.pl_text == 'same' else p.pl_text

    cfg['method'] = p.method
    before, after = method_block(p.method)
    for key in before:
        cfg[key] = getattr(p, key)
    if p.labeled_samples is not None:
        if method_info(p.method).uses_unlabeled:
            raise ValueError(f'labeled_samples is for labeled-only methods; method {p.method} iterates over '
                             'the unlabeled list: remove labeled_samples')
        cfg['labeled_samples'] = int(p.labeled_samples)
    cfg['disable_dropout'] = p.disable_dropout
    for key in after:
        cfg[key] = getattr(p, key)
    cfg['fp_rate'] = p.fp_rate
    lam = p.maskclip_consistency_lambda
    cfg['maskclip_consistency_lambda'] = list(lam) if isinstance(lam, (list, tuple)) else lam
    cfg['clip_encoder'] = p.clip_encoder if lam != 0 else None
    cfg['mcc_conf_thresh'] = p.mcc_conf_thresh
    cfg['mcc_loss_reduce'] = p.mcc_loss_reduce
    if model_info(p.model).vision_language:   # the release writes it (always None: its model asserts so) for its VLMs
        model_args['maskclip_class_filter'] = None
    if p.renorm_clip_img:
        model_args['renorm_clip_img'] = True
    if p.mcc_fix_resize_pos and lam != 0 and p.crop_size != 512:  # only matters then
        cfg['mcc_fix_resize_pos'] = True

    cfg['criterion'] = {'name': p.criterion, 'kwargs': {'ignore_index': IGNORE_INDEX}}
    if p.criterion == 'OHEM':   # UniMatch configs/cityscapes.yaml
        cfg['criterion']['kwargs'].update(OHEM_KWARGS)
    cfg['criterion_u'] = p.criterion_u

    cfg.update(_optimizer_keys(p))
    cfg['warmup_iters'] = p.warmup_iters
    cfg['warmup_ratio'] = 1e-6

    cfg['gpu_model'] = p.gpu_model
    cfg['n_gpus'] = p.n_gpus
    cfg['n_nodes'] = p.n_nodes
    cfg['batch_size'] = p.batch_size
    cfg['epochs'] = p.epochs
    cfg['iters'] = p.iters
    if p.scheduler_max_iters is not None:
        cfg['scheduler_max_iters'] = p.scheduler_max_iters
    cfg['eval_mode'] = p.eval_mode
    if p.eval_mode == 'zegclip_sliding_window':
        cfg['stride'] = ZSW_STRIDE
    if p.eval_size_multiple is not None:
        cfg['eval_size_multiple'] = p.eval_size_multiple
    cfg['eval_every_n_epochs'] = p.eval_every
    cfg['nccl_p2p_disable'] = p.nccl_p2p_disable

    cfg['exp'] = p.exp_id
    cfg['name'] = run_name(cfg)
    cfg['version'] = semiseg.__version__
    cfg.update(p.options)
    return fit_model_to_method(cfg)


def method_block(method: str) -> tuple[list[str], list[str]]:
    """The config keys `method` reads, in the release's order: (those before `disable_dropout`,
    those after it). Raises ValueError for an unknown method."""
    info = method_info(method)
    before = [k for k in PRE_DROPOUT_PSEUDO_KEYS if k in info.pseudo_label_keys]
    if not info.uses_unlabeled:
        before.append('epoch_over')   # labeled-only: what an epoch iterates over
    before += list(info.config_keys)
    return before, ['pleval'] if 'pleval' in info.pseudo_label_keys else []


def _param_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(RunParams)
            if f.default is not dataclasses.MISSING}


def switch_method(cfg: dict[str, Any], method: str) -> dict[str, Any]:
    """A copy of `cfg` trained with `method`: the old method's own keys leave, the new one's arrive
    in the release's order (a value the config already had is kept, else the RunParams default),
    and the model is fitted to the method (`fit_model_to_method`)."""
    before, after = method_block(method)
    defaults = _param_defaults()
    src = copy.deepcopy(cfg)
    out: dict[str, Any] = {}
    for key, value in src.items():
        if key in METHOD_KEYS:
            continue
        if key == 'method':
            out['method'] = method
            out.update((k, src.get(k, defaults[k])) for k in before)
            continue
        out[key] = value
        if key == 'disable_dropout':
            out.update((k, src.get(k, defaults[k])) for k in after)
    return fit_model_to_method(out)


def fit_model_to_method(cfg: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with the model variant its method trains (in place; returned).

    The one such case: `supervised` on an AllSpark model trains the AllSpark paper's supervised
    baseline, the same MiT encoder and SegFormer head without the AllSpark module (xmed-lab/AllSpark
    `model/semseg/semidec_base.py`): `model_args.decode_head.with_allspark: false`. Any other method
    gets the AllSpark module back (the switch is removed)."""
    if not model_info(cfg.get('model', '')).allspark:
        return cfg
    model_args = cfg.setdefault('model_args', {})
    head = model_args.get('decode_head')
    if cfg.get('method') == 'supervised':
        if not isinstance(head, dict):
            head = model_args['decode_head'] = {}
        head[ALLSPARK_SWITCH] = False
    elif isinstance(head, dict) and head.get(ALLSPARK_SWITCH) is False:
        del head[ALLSPARK_SWITCH]
        if not head:
            del model_args['decode_head']
    return cfg


def with_overrides(cfg: dict[str, Any], overrides: list[Override], data_root: str | None = None) -> dict[str, Any]:
    """`cfg` with `--cfg-options` applied: dataset keys re-derived, the name recomputed, values checked.

    Changing `dataset` moves `data_root` to that dataset's folder under the datasets root (unless
    data_root is given too); changing either re-reads `nclass` (a custom dataset's classes.txt)
    unless nclass is given. The name is read off the final config, plus `_h<hash>` for changed keys
    it cannot show exactly, so two different configs never share a name.
    """
    method_ovs = [ov for ov in overrides if ov.key == 'method']
    base, changed = apply_overrides(cfg, method_ovs[-1:])
    if changed:   # the new method's keys become valid before the other overrides are applied
        base = switch_method(base, base['method'])
    out, rest = apply_overrides(base, [ov for ov in overrides if ov.key != 'method'])
    changed.update(rest)
    if not changed:
        return out
    given = {ov.key for ov in overrides}
    if 'data_root' in changed:
        root = str(out['data_root'])
        out['data_root'] = (root if root.startswith('~') else os.path.abspath(root)).rstrip('/') + '/'
    if 'dataset' in changed and 'data_root' not in given:
        out['data_root'] = dataset_folder(out['dataset'], data_root)
    if {'dataset', 'data_root'} & set(changed) and 'nclass' not in given:
        out['nclass'] = dataset_class_count(out['dataset'], out['data_root'])
        rzl = out['dataset'] in DATASETS and DATASETS[out['dataset']].reduce_zero_label
        out = _set_after(out, 'nclass', 'reduce_zero_label', True) if rzl else \
            {k: v for k, v in out.items() if k != 'reduce_zero_label'}
    out['name'] = renamed(cfg, out, changed)
    if isinstance(out.get('sweep'), dict):   # a file run's record stays true to its config
        out['sweep'] = {k: v for k, v in ((k, dotted_get(out, k, _MISSING)) for k in out['sweep']) if v is not _MISSING}
    validate_config(out)
    return out


_MISSING = object()


def with_seed(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """`cfg` repeated with another `seed` (the engine option): the name gets `_s<seed>`, nothing else
    changes. Seed 0, the default, leaves no `seed` key, so seed 0 of a sweep is the plain run."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f'a seed must be a whole number >= 0, got {seed!r}')
    if seed == cfg.get('seed', 0):
        return cfg
    out = with_overrides(cfg, [Override('seed', str(seed), seed)])
    if seed == 0:
        out.pop('seed')
    return out


def renamed(old: dict[str, Any], new: dict[str, Any], changed: dict[str, Any]) -> str:
    """The name of `new` (= `old` with `changed`): read off the config, then `_s<seed>` for a seed other
    than 0, then the `_h<hash>` of the changed keys the name cannot show (naming.override_suffix),
    combined with `old`'s own hash, so overrides applied in steps (an experiment file, then
    --cfg-options, then --seeds or --ngpus) never lose one and a seed never enters the hash."""
    hidden = {k: v for k, v in changed.items() if k != 'seed'}
    before = _HASH.search(str(old.get('name', '')))
    if before and override_suffix(hidden):
        hidden = {'_after': before.group(0), **hidden}
    suffix = override_suffix(hidden) or (before.group(0) if before else '')
    seed = new.get('seed', 0)
    return run_name(new) + (f'_s{seed}' if seed else '') + suffix


def _set_after(cfg: dict[str, Any], anchor: str, key: str, value: Any) -> dict[str, Any]:
    """A copy of `cfg` with `key` set and placed right after `anchor` (YAML order)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if k == key:
            continue
        out[k] = v
        if k == anchor:
            out[key] = value
    return out


def global_batch(cfg: dict[str, Any]) -> int:
    """Images per optimizer step over all processes (labeled ones; as many unlabeled)."""
    return int(cfg['batch_size']) * int(cfg['n_gpus']) * int(cfg['n_nodes'])


def with_world(cfg: dict[str, Any], n_gpus: int | None = None, n_nodes: int | None = None) -> tuple[dict, str | None]:
    """`cfg` trained on `n_gpus` x `n_nodes` processes instead of its own: (new config, warning).

    The batch size is per process, so the global batch changes with the process count: the config
    records the configured and the actual global batch, the name shows the new count (as the
    release's `_{nodes}x{gpus}x{batch}` piece), and with `scale_lr: linear` the learning rate
    follows the global batch (MMEngine's auto_scale_lr rule: lr x actual / configured).
    """
    new_gpus, new_nodes = n_gpus or cfg['n_gpus'], n_nodes or cfg['n_nodes']
    if (new_gpus, new_nodes) == (cfg['n_gpus'], cfg['n_nodes']):
        return cfg, None
    out = copy.deepcopy(cfg)
    configured = global_batch(cfg)
    out['n_gpus'], out['n_nodes'] = new_gpus, new_nodes
    actual = global_batch(out)
    out['global_batch'] = {'configured': configured, 'actual': actual}
    scaled = cfg.get('scale_lr', 'none') == 'linear'
    holder = out['optimizer'] if isinstance(out.get('optimizer'), dict) else out
    old_lr = holder['lr']
    if scaled:
        holder['lr'] = old_lr * actual / configured
    changed = {'n_gpus': new_gpus, 'n_nodes': new_nodes, **({'lr': holder['lr']} if scaled else {})}
    out['name'] = renamed(cfg, out, {k: v for k, v in changed.items() if k == 'lr'})
    lr_note = (f'the learning rate is scaled linearly to {holder["lr"]:.3g}' if scaled else
               f'the learning rate stays {old_lr:.3g} (--cfg-options scale_lr=linear scales it to '
               f'{old_lr * actual / configured:.3g}, the linear rule)')
    warning = (f'{new_nodes} node(s) x {new_gpus} GPU(s) instead of {cfg["n_nodes"]} x {cfg["n_gpus"]}: the global '
               f'batch of {cfg["name"]} is {actual} images instead of {configured} ({cfg["batch_size"]} per GPU); '
               f'{lr_note}')
    return out, warning
