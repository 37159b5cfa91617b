"""Run names, built exactly as the SemiVL release builds them (spec §1.3).

The name encodes every parameter that differs from the defaults, so the release's quirks are kept
on purpose (e.g. `.0_` eats the following separator): names must match the released configs.
"""
from __future__ import annotations

from .params import RunParams

DATASET_ABBREV = {'pascal': 'voc', 'cityscapes': 'cs'}
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
METHOD_ABBREV = {'semivl': 'svl', 'unimatch': 'um', 'supervised': 'sup'}
CONF_MODE_ABBREV = {'pixelwise': '', 'pixelratio': '-cpr', 'pixelavg': '-cpa'}
MCC_REDUCE_ABBREV = {'mean': '', 'mean_valid': '-mv', 'mean_all': '-ma'}
CRITERION_ABBREV = {'CELoss': 'ce', 'OHEM': 'oh'}
CRITERION_U_ABBREV = {'CELoss': 'ce'}
OPT_ABBREV = {'adamw': 'adamw', 'original': 'org'}
EVAL_ABBREV = {'original': 'or', 'sliding_window': 'sw', 'zegclip_sliding_window': 'zsw'}
# applied in this order to the assembled name
FINAL_REPLACEMENTS = (
    ('.0_', ''), ('.0-', ''), ('.', ''),
    ('True', 'T'), ('False', 'F'), ('None', 'N'),
    ('[', ''), (']', ''), ('(', ''), (')', ''),
    (',', 'j'), (' ', ''),
)


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


def _is_semi(p: RunParams) -> bool:
    return p.method in ('semivl', 'unimatch')


def mcc_fix_resize_pos_active(p: RunParams) -> bool:
    """The fixed pos-embed resize only matters with a clip encoder and a crop other than 512."""
    return p.mcc_fix_resize_pos and p.maskclip_consistency_lambda != 0 and p.crop_size != 512


def raw_name(p: RunParams) -> str:
    """The name before the final replacements (pieces 1-29 of spec §1.3)."""
    parts = [f'{DATASET_ABBREV.get(p.dataset, p.dataset)}-{p.split}']
    if p.img_scale is not None:
        parts.append(f'-{p.img_scale}')
    if tuple(p.scale_ratio_range) != (0.5, 2.0):
        parts.append(f'-s{p.scale_ratio_range[0]}-{p.scale_ratio_range[1]}')
    parts.append(f'-{p.crop_size}')
    if p.labeled_photometric_distortion:
        parts.append('-phd')
    parts.append('_' + p.model.replace('mmseg.', '').replace('zegclip', 'zcl'))
    if p.text_embedding_variant != 'single':
        parts.append('-t' + _lookup(TEXT_ABBREV, p.text_embedding_variant, 'text_embedding_variant'))
    if p.mcc_text != 'same':
        parts.append('-mt' + _lookup(TEXT_ABBREV, p.mcc_text, 'mcc_text'))
    if p.pl_text != 'same':
        parts.append('-pt' + _lookup(TEXT_ABBREV, p.pl_text, 'pl_text'))
    parts.append('_' + _lookup(METHOD_ABBREV, p.method, 'method'))
    if _is_semi(p):
        if not p.use_fp:
            parts.append('-nfp')
        parts.append(_lookup(CONF_MODE_ABBREV, p.conf_mode, 'conf_mode'))
        parts.append(f'-{p.conf_thresh}')
    if p.disable_dropout:
        parts.append('-disdrop')
    if _is_semi(p) and p.pleval:
        parts.append('-plev')
    if p.fp_rate != 0.5:
        parts.append(f'-fpr{p.fp_rate}')
    if p.maskclip_consistency_lambda != 0:
        parts.append(f'-mcc{p.maskclip_consistency_lambda}')
    if p.mcc_conf_thresh != 0.75:
        parts.append(f'c{p.mcc_conf_thresh}')
    parts.append(_lookup(MCC_REDUCE_ABBREV, p.mcc_loss_reduce, 'mcc_loss_reduce'))
    if p.maskclip_class_filter is not None:
        parts.append(f'-cf{p.maskclip_class_filter}')
    if p.renorm_clip_img:
        parts.append('-rnci')
    if mcc_fix_resize_pos_active(p):
        parts.append('-frp')
    if p.criterion != 'mmseg':
        parts.append('-' + _lookup(CRITERION_ABBREV, p.criterion, 'criterion'))
    if p.criterion_u != 'mmseg':
        parts.append('-u' + _lookup(CRITERION_U_ABBREV, p.criterion_u, 'criterion_u'))
    parts.append(f'_{_lookup(OPT_ABBREV, p.opt, "opt")}-{p.lr:.0e}')
    if p.backbone_lr_mult != 10.0:
        parts.append(f'-b{p.backbone_lr_mult}')
    if p.conv_enc_lr_mult != 1.0:
        parts.append(f'-cl{p.conv_enc_lr_mult}')
    if p.warmup_iters > 0:
        parts.append(f'-w{humanize(p.warmup_iters)}')
    if (p.n_nodes, p.n_gpus, p.batch_size) != (1, 4, 2):
        parts.append(f'_{p.n_nodes}x{p.n_gpus}x{p.batch_size}')
    if p.epochs is not None and p.epochs != 80:
        parts.append(f'-ep{humanize(p.epochs)}')
    if p.iters is not None:
        parts.append(f'-i{humanize(p.iters)}')
    if p.scheduler_max_iters is not None:
        parts.append(f'-smi{p.scheduler_max_iters}')
    parts.append('_e' + _lookup(EVAL_ABBREV, p.eval_mode, 'eval_mode'))
    return ''.join(parts)


def finalize_name(name: str) -> str:
    """Apply the release's character replacements, in order."""
    for old, new in FINAL_REPLACEMENTS:
        name = name.replace(old, new)
    return name


def run_name(p: RunParams) -> str:
    """The run name of `p`, identical to the release's for the same parameters."""
    return finalize_name(raw_name(p))
