"""Run names, read off the run config exactly as the SemiVL release builds them from its parameters.

google-research/semivl `experiments.py`, `generate_experiment_cfgs` (the name part): the name
encodes every setting that differs from the defaults, and the release's quirks are kept on purpose
(e.g. `.0_` eats the following separator) so that names match the released configs. Because the
name is a function of the config, a config changed by `--cfg-options` is renamed by the same code;
`override_suffix` adds a short hash for changed keys the name cannot show exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from semiseg.data.datasets import DATASETS
from semiseg.engine.options import RUNTIME_OPTIONS
from semiseg.methods.registry import METHODS, method_info

from .params import RunParams, default_lr_multi

TEXT_ABBREV = {
    'conceptavg_single': 'cavgs',
    'conceptavg2_single': 'cavg2s',
    'conceptavg3_single': 'cavg3s',
    'conceptavg4_single': 'cavg4s',
    'concept2_single': 'c2s',
    'concept3_single': 'c3s',
    'concept4_single': 'c4s',
    'multi': 'm',
}
CONF_MODE_ABBREV = {'pixelwise': '', 'pixelratio': '-cpr', 'pixelavg': '-cpa'}
MCC_REDUCE_ABBREV = {'mean': '', 'mean_valid': '-mv', 'mean_all': '-ma'}
CRITERION_ABBREV = {'CELoss': 'ce', 'OHEM': 'oh'}
CRITERION_U_ABBREV = {'CELoss': 'ce'}
EVAL_ABBREV = {'original': 'or', 'sliding_window': 'sw', 'zegclip_sliding_window': 'zsw', 'center_crop': 'cc',
               'shifted_sliding_window': 'ssw'}
# applied in this order to the assembled name
FINAL_REPLACEMENTS = (
    ('.0_', ''), ('.0-', ''), ('.', ''),
    ('True', 'T'), ('False', 'F'), ('None', 'N'),
    ('[', ''), (']', ''), ('(', ''), (')', ''),
    (',', 'j'), (' ', ''),
)
# the defaults a name piece is left out at: RunParams's, the one home of every default
DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunParams) if f.default is not dataclasses.MISSING}
# config keys whose value the name shows exactly (plus the methods' exact NamePieces); any other
# changed key gets a hash suffix
EXACT_KEYS = frozenset({p.key for m in METHODS.values() for p in m.name_pieces if p.exact}) | frozenset({
    'dataset', 'split', 'img_scale', 'scale_ratio_range', 'crop_size', 'labeled_photometric_distortion',
    'model', 'text_embedding_variant', 'mcc_text', 'pl_text', 'method', 'use_fp', 'conf_mode',
    'conf_thresh', 'disable_dropout', 'pleval', 'fp_rate', 'maskclip_consistency_lambda', 'mcc_conf_thresh',
    'mcc_loss_reduce', 'criterion', 'criterion.name', 'criterion_u', 'n_gpus', 'n_nodes', 'batch_size',
    'epochs', 'eval_mode', 'name', 'epoch_over', 'labeled_samples', 'eval_size_multiple', 'lr_multi',
})
# keys that say where the data is or how the run is executed, not what is trained
NOT_IN_NAME = frozenset({'data_root', 'version', 'exp', 'gpu_model', 'nccl_p2p_disable'}) | RUNTIME_OPTIONS


def _lookup(table: dict[str, str], key: str, what: str) -> str:
    """Table lookup whose KeyError names the valid choices."""
    try:
        return table[key]
    except KeyError:
        raise KeyError(f'{what} {key!r} has no name abbreviation; choices: {", ".join(table)}') from None


def humanize(num: float) -> str:
    """H(x): 3 significant digits, then K/M/B/T while >= 1000 (83760 -> '83.8K')."""
    num = float(f'{num:.3g}')
    magnitude = 0
    while abs(num) >= 1000:
        magnitude += 1
        num /= 1000.0
    return f'{num:f}'.rstrip('0').rstrip('.') + ['', 'K', 'M', 'B', 'T'][magnitude]


def _optimizer_pieces(cfg: dict[str, Any]) -> str:
    """`_{opt}-{lr}` and the multipliers that differ from the defaults."""
    opt = cfg.get('optimizer')
    if opt is None:   # UniMatch / AllSpark SGD: lr_multi shown unless it is the dataset's usual one
        usual = default_lr_multi(cfg['dataset'])
        return f'_org-{cfg["lr"]:.0e}' + (f'-lm{cfg["lr_multi"]}' if cfg['lr_multi'] != usual else '')
    keys = (opt.get('paramwise_cfg') or {}).get('custom_keys') or {}
    out = f'_adamw-{opt["lr"]:.0e}'
    backbone = (keys.get('backbone') or {}).get('lr_mult', DEFAULTS['backbone_lr_mult'])
    if backbone != DEFAULTS['backbone_lr_mult']:
        out += f'-b{backbone}'
    conv = (keys.get('conv_encoder') or {}).get('lr_mult', DEFAULTS['conv_enc_lr_mult'])
    if conv != DEFAULTS['conv_enc_lr_mult']:
        out += f'-cl{conv}'
    if 'decode_head' in keys:     # UniMatch V2's two groups: the head at lr * lr_multi
        out += f'-hm{keys["decode_head"]["lr_mult"]}'
    return out


def raw_name(cfg: dict[str, Any]) -> str:
    """The name before the final replacements (pieces in the release's order)."""
    info = DATASETS.get(cfg['dataset'])
    parts = [f'{info.abbrev if info else cfg["dataset"]}-{cfg["split"]}']
    if cfg.get('img_scale') is not None:
        parts.append(f'-{cfg["img_scale"]}')
    lo, hi = cfg['scale_ratio_range']
    if (lo, hi) != tuple(DEFAULTS['scale_ratio_range']):
        parts.append(f'-s{lo}-{hi}')
    parts.append(f'-{cfg["crop_size"]}')
    if cfg.get('labeled_photometric_distortion'):
        parts.append('-phd')
    parts.append('_' + cfg['model'].replace('mmseg.', '').replace('zegclip', 'zcl'))
    variant = cfg.get('text_embedding_variant', DEFAULTS['text_embedding_variant'])
    if variant != DEFAULTS['text_embedding_variant']:
        parts.append('-t' + _lookup(TEXT_ABBREV, variant, 'text_embedding_variant'))
    for key, tag in (('mcc_text', '-mt'), ('pl_text', '-pt')):
        if cfg.get(key, variant) != variant:
            parts.append(tag + _lookup(TEXT_ABBREV, cfg[key], key))

    method = method_info(cfg['method'])
    parts.append('_' + method.abbrev)
    keys = method.pseudo_label_keys
    if 'use_fp' in keys and not cfg['use_fp']:
        parts.append('-nfp')
    if 'conf_mode' in keys:
        parts.append(_lookup(CONF_MODE_ABBREV, cfg['conf_mode'], 'conf_mode'))
    if 'conf_thresh' in keys:
        parts.append(f'-{cfg["conf_thresh"]}')
    if cfg.get('epoch_over') == 'unlabeled':
        parts.append('-eqit')   # a labeled-only run with as many iterations as the semi-supervised ones
    if cfg.get('labeled_samples'):
        parts.append(f'-ls{cfg["labeled_samples"]}')   # the labeled list repeated to this length
    for key, piece, _ in method.name_pieces:
        default = DEFAULTS[key]
        if cfg[key] != default:
            parts.append(piece if isinstance(default, bool) else f'{piece}{cfg[key]}')
    if cfg.get('disable_dropout'):
        parts.append('-disdrop')
    if 'pleval' in keys and cfg['pleval']:
        parts.append('-plev')
    if cfg.get('fp_rate', DEFAULTS['fp_rate']) != DEFAULTS['fp_rate']:
        parts.append(f'-fpr{cfg["fp_rate"]}')
    lam = cfg.get('maskclip_consistency_lambda', 0)
    if lam != 0:
        parts.append(f'-mcc{lam}')
    if cfg.get('mcc_conf_thresh', DEFAULTS['mcc_conf_thresh']) != DEFAULTS['mcc_conf_thresh']:
        parts.append(f'c{cfg["mcc_conf_thresh"]}')
    parts.append(_lookup(MCC_REDUCE_ABBREV, cfg.get('mcc_loss_reduce', DEFAULTS['mcc_loss_reduce']), 'mcc_loss_reduce'))
    model_args = cfg.get('model_args') or {}
    if model_args.get('renorm_clip_img'):
        parts.append('-rnci')
    if cfg.get('mcc_fix_resize_pos'):
        parts.append('-frp')
    criterion = cfg['criterion']['name'] if isinstance(cfg['criterion'], dict) else cfg['criterion']
    if criterion != DEFAULTS['criterion']:
        parts.append('-' + _lookup(CRITERION_ABBREV, criterion, 'criterion'))
    if cfg.get('criterion_u', DEFAULTS['criterion_u']) != DEFAULTS['criterion_u']:
        parts.append('-u' + _lookup(CRITERION_U_ABBREV, cfg['criterion_u'], 'criterion_u'))

    parts.append(_optimizer_pieces(cfg))
    if cfg.get('warmup_iters', 0) > 0:
        parts.append(f'-w{humanize(cfg["warmup_iters"])}')
    world = ('n_nodes', 'n_gpus', 'batch_size')
    if tuple(cfg[k] for k in world) != tuple(DEFAULTS[k] for k in world):
        parts.append(f'_{cfg["n_nodes"]}x{cfg["n_gpus"]}x{cfg["batch_size"]}')
    if cfg.get('epochs') is not None and cfg['epochs'] != DEFAULTS['epochs']:
        parts.append(f'-ep{humanize(cfg["epochs"])}')
    if cfg.get('iters') is not None:
        parts.append(f'-i{humanize(cfg["iters"])}')
    if cfg.get('scheduler_max_iters') is not None:
        parts.append(f'-smi{cfg["scheduler_max_iters"]}')
    parts.append('_e' + _lookup(EVAL_ABBREV, cfg['eval_mode'], 'eval_mode'))
    if cfg.get('eval_size_multiple'):
        parts.append(str(cfg['eval_size_multiple']))
    return ''.join(parts)


def finalize_name(name: str) -> str:
    """Apply the release's character replacements, in order."""
    for old, new in FINAL_REPLACEMENTS:
        name = name.replace(old, new)
    return name


def run_name(cfg: dict[str, Any]) -> str:
    """The run name of a config, identical to the release's for the same settings."""
    return finalize_name(raw_name(cfg))


def override_suffix(changed: dict[str, Any]) -> str:
    """`_h<6 hex>` over the changed keys the name does not show exactly ('' when there are none).

    `changed` maps dotted config keys to their new values; keys that only say where the data is or
    how the run executes (data_root, num_workers, device, ...) do not count.
    """
    hidden = {k: v for k, v in changed.items() if k not in EXACT_KEYS and k.split('.')[0] not in NOT_IN_NAME}
    if not hidden:
        return ''
    digest = hashlib.sha256(json.dumps(hidden, sort_keys=True, default=str).encode()).hexdigest()
    return f'_h{digest[:6]}'

