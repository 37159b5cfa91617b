"""Run config: RunParams -> the ordered config dict of spec §1.2.

Insertion order is the YAML order. For exps 40-44 the result equals the release's generated
config key for key (data_root and version aside). Tuples become lists so that
`yaml.safe_dump` can write the config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import semiseg

from .naming import mcc_fix_resize_pos_active, run_name
from .params import RunParams

DATA_ROOT_ENV = 'SEMISEG_DATA'
DEFAULT_DATA_ROOT = '~/data'


@dataclass(frozen=True)
class DatasetEntry:
    """What a run config needs to know about a built-in dataset."""

    folder: str   # folder under the data root
    nclass: int   # number of classes


DATASETS: dict[str, DatasetEntry] = {
    'pascal': DatasetEntry('voc', 21),
    'cityscapes': DatasetEntry('cityscapes', 19),
    'coco': DatasetEntry('coco', 81),
    'ade': DatasetEntry('ADEChallengeData2016', 150),
    'toy': DatasetEntry('toy', 5),
}
# maskclip_class_filter presets
CLASS_FILTERS: dict[int, list[int]] = {1: [9, 18], 2: list(range(1, 21))}
# models that the release configures with deeplab-specific keys; no experiment uses them
UNSUPPORTED_MODELS = ('dlv3p-r101', 'dlv3p-xc65')
SEMI_METHODS = ('semivl', 'unimatch')
ZSW_STRIDE = 426


def resolve_data_root(cli_value: str | None = None) -> str:
    """The data root: `--data-root` flag > `SEMISEG_DATA` env > `~/data`.

    `~` stays unexpanded (the release writes `~/data/...`; readers expand it); a relative path
    becomes absolute so that jobs started from another folder (Slurm) find the same data.
    """
    root = str(cli_value or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)
    if not root.startswith('~'):
        root = os.path.abspath(root)
    return root.rstrip('/') or '/'


def dataset_root(dataset: str, data_root: str | None = None) -> str:
    """The dataset folder under the data root, with a trailing slash like the release."""
    if dataset not in DATASETS:
        raise ValueError(f'unknown dataset {dataset!r}; choices: {", ".join(DATASETS)}')
    return f'{resolve_data_root(data_root).rstrip("/")}/{DATASETS[dataset].folder}/'


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
    if p.opt == 'original':
        return {'lr': p.lr, 'lr_multi': 1 if p.dataset == 'cityscapes' else 10}
    raise ValueError(f'unknown optimizer {p.opt!r}; choices: adamw, original')


def build_config(p: RunParams, data_root: str | None = None) -> dict[str, Any]:
    """The run config of `p` with keys in the release's order (spec §1.2)."""
    if p.model.replace('mmseg.', '') in UNSUPPORTED_MODELS:
        raise ValueError(f'model {p.model!r} needs the deeplab config keys, which semiseg does not '
                         f'generate; use a vlm-* model')
    cfg: dict[str, Any] = {'dataset': p.dataset, 'data_root': dataset_root(p.dataset, data_root),
                           'nclass': DATASETS[p.dataset].nclass}
    if p.dataset == 'ade':
        cfg['reduce_zero_label'] = True
    cfg['split'] = p.split
    cfg['img_scale'] = list(p.img_scale) if p.img_scale is not None else None
    cfg['scale_ratio_range'] = list(p.scale_ratio_range)
    cfg['crop_size'] = p.crop_size
    cfg['labeled_photometric_distortion'] = p.labeled_photometric_distortion

    model_args: dict[str, Any] = {}
    cfg['model_args'] = model_args
    cfg['model'] = p.model
    cfg['text_embedding_variant'] = p.text_embedding_variant
    cfg['mcc_text'] = p.text_embedding_variant if p.mcc_text == 'same' else p.mcc_text
    cfg['pl_text'] = p.text_embedding_variant if p.pl_text == 'same' else p.pl_text

    cfg['method'] = p.method
    if p.method in SEMI_METHODS:
        cfg['use_fp'] = p.use_fp
        cfg['conf_mode'] = p.conf_mode
        cfg['conf_thresh'] = p.conf_thresh
    cfg['disable_dropout'] = p.disable_dropout
    if p.method in SEMI_METHODS:
        cfg['pleval'] = p.pleval
    cfg['fp_rate'] = p.fp_rate
    lam = p.maskclip_consistency_lambda
    cfg['maskclip_consistency_lambda'] = list(lam) if isinstance(lam, (list, tuple)) else lam
    cfg['clip_encoder'] = p.clip_encoder if lam != 0 else None
    cfg['mcc_conf_thresh'] = p.mcc_conf_thresh
    cfg['mcc_loss_reduce'] = p.mcc_loss_reduce
    if p.maskclip_class_filter is not None and p.maskclip_class_filter not in CLASS_FILTERS:
        raise ValueError(f'unknown maskclip_class_filter {p.maskclip_class_filter!r}; '
                         f'choices: None, {", ".join(map(str, CLASS_FILTERS))}')
    model_args['maskclip_class_filter'] = (None if p.maskclip_class_filter is None
                                           else list(CLASS_FILTERS[p.maskclip_class_filter]))
    if p.renorm_clip_img:
        model_args['renorm_clip_img'] = True
    if mcc_fix_resize_pos_active(p):
        cfg['mcc_fix_resize_pos'] = True

    cfg['criterion'] = {'name': p.criterion, 'kwargs': {'ignore_index': 255}}
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
    cfg['eval_every_n_epochs'] = p.eval_every
    cfg['nccl_p2p_disable'] = p.nccl_p2p_disable

    cfg['exp'] = p.exp_id
    cfg['name'] = run_name(p)
    cfg['version'] = semiseg.__version__
    cfg.update(p.options)
    return cfg
