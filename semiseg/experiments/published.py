"""Published mIoU of the runs that reproduce a paper, with the table and file each number is read from.

`PUBLISHED[(paper, dataset, split, backbone)] -> Published(miou, table, source)`; `paper` is one of
`PAPERS`, `dataset` and `split` are our run-config values, `backbone` the paper's name for the
encoder. `published_result(exp_id, cfg)` attaches a number to a run: only when its experiment
declares `reproduces` (exps 40-44: 'SemiVL'; ablations and demos declare nothing; a file experiment
inherits its base's), the run trains the paper's method, its model is one of `MODEL_BACKBONES`, the
paper reports that (dataset, split, backbone), and the run is the paper's run unchanged: its config
equals a generated run of an experiment reproducing that paper, seed, runtime options, experiment
id, sweep record and data folder aside (`semiseg.experiments.identity.paper_key`); `--cfg-options
epochs=2` or a swept learning rate gives None. Anything else gives None, never a neighbouring number.

A paper's baselines (`PAPER_BASELINES`: UniMatch V2's fixmatch.py and supervised.py, exps 64 and 66,
numbers read from its training logs) attach the same way to runs of the baseline's method.

Which number a paper reports: `report_rule(cfg, published)`, the rule of the run's method
(`MethodInfo.report`: the best evaluation, of the EMA teacher for UniMatch V2) unless the published
row says otherwise (`Published.report`). `--results` computes ours by the same rule.

The numbers are transcribed from the verified list kept with the reference data
(`published_results.csv`, one row per number with its table and source); `tests/test_published.py`
checks this table against it. What was left out, and why:
- SemiVL's own tables were not readable; its numbers are as cited in the UniMatch V2 README (same
  values as SemiVL's plot). SemiVL reports none for ADE20K 1/128 and Cityscapes 1/30, so those
  runs of exps 43 / 44 get None.
- AllSpark README 4.1 'Reproduced' row (released checkpoints, not the paper's number).
- AllSpark's blended-split table (docs/pascal_aug.png) also prints 'AllSpark†' and 'UniMatch†' rows;
  the image does not say what † means, so only the rows without † are held. The UniMatch release's
  own U2PL-split logs (crop 513; within 0.02 of the † row) are exp 33's numbers, under its split
  names 'u2pl_1_16' .. 'u2pl_1_4' (the blended '1_16' .. '1_4' rows are the crop-321 lists).
The csv's `pascal_blended` is our dataset 'pascal' with the blended splits '1_16' .. '1_2'; its UniMatch V2
`ade` rows are our dataset 'ade20k' (the release's own ADE20K preparation, which its runs used).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from semiseg.methods.registry import METHODS

from .identity import paper_key

# the run-config method that reproduces each paper (a baseline run in the same experiment gets None)
PAPER_METHODS = {'SemiVL': 'semivl', 'UniMatch': 'unimatch', 'AllSpark': 'allspark',
                 'UniMatch V2': 'unimatch_v2'}
PAPERS = tuple(PAPER_METHODS)

# run-config model -> the encoder name the papers use
MODEL_BACKBONES = {
    'mmseg.vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb': 'CLIP ViT-B/16',    # SemiVL VOC / COCO / ADE
    'mmseg.vlm-vlg-aspp-s2p4-skr04-ftap-mcvitb': 'CLIP ViT-B/16',   # SemiVL Cityscapes
    'mmseg.allspark-mitb5': 'MiT-B5',
    'mmseg.dlv3p-r101': 'ResNet-101',
    'mmseg.dlv3p-r50': 'ResNet-50',
    'mmseg.dlv3p-xc65': 'Xception-65',
    'mmseg.dpt-dinov2s': 'DINOv2-S',
    'mmseg.dpt-dinov2b': 'DINOv2-B',
    'mmseg.dpt-dinov2l': 'DINOv2-L',
}


@dataclass(frozen=True)
class Published:
    """One published number."""

    miou: float     # mIoU in percent, as printed
    table: str      # which table (or log) prints it
    source: str     # the file it was read from (commit-pinned URL)
    report: str | None = None   # the number it is (REPORT_RULES) where not its method's rule


Key = tuple[str, str, str, str]   # (paper, dataset, split, backbone)

_SEMIVL_CITED = 'SemiVL row (SECONDARY: cites SemiVL paper; SemiVL tables not readable here)'
_V2 = 'https://github.com/LiheYoung/UniMatch-V2/blob/f6afb4dfca2d9dcbcee2307e97717954ca75c0ba/'
_V1 = 'https://github.com/LiheYoung/UniMatch/blob/0324f3dd4a22128105a5eb135d2586c0bb3cc647/'
_ASP = 'https://github.com/xmed-lab/AllSpark/blob/9da63e2d941597575a706b756b798a3e2723ba16/'
_V2_LOG_TABLE = 'UniMatch V2 official training log training-logs/table{t:02d}-* (paper Tab. {t} per file name)'
_V2_LOG_DATASET = {'pascal': 'pascal', 'cityscapes': 'cityscapes', 'ade20k': 'ade20k', 'coco': 'coco'}
_V2_LOG_SIZE = {'DINOv2-S': 'small', 'DINOv2-B': 'base', 'DINOv2-L': 'large'}


def _rows(paper: str, dataset: str, backbone: str, table: str, source: str,
          values: dict[str, float]) -> dict[Key, Published]:
    """One printed row: split -> mIoU."""
    return {(paper, dataset, split, backbone): Published(miou, table, source) for split, miou in values.items()}


def _v2_logs(dataset: str, backbone: str, table: int, values: dict[str, float]) -> dict[Key, Published]:
    """UniMatch V2 numbers read from the release's training logs (best EMA-teacher mIoU, the rule that
    reproduces all 18 DINOv2-B README numbers); the log's file name names the paper table."""
    out = {}
    for split, miou in values.items():
        name = (f'table{table:02d}-{_V2_LOG_DATASET[dataset]}_unimatch_v2_{split}labels_'
                f'dinov2_{_V2_LOG_SIZE[backbone]}.log')
        out[('UniMatch V2', dataset, split, backbone)] = Published(
            miou, _V2_LOG_TABLE.format(t=table), f'{_V2}training-logs/{name}')
    return out


def _v2_baseline_logs(log_method: str, dataset: str, table: int, values: dict[str, float],
                      truncated: dict[str, str] | None = None) -> dict[Key, Published]:
    """A UniMatch V2 baseline's DINOv2-B numbers read from the release's training logs
    (`training-logs/table{table}-...{log_method}...labels_dinov2_base.log`); `truncated`: split -> how much
    of the run its (cancelled) log holds, said in the row's table text."""
    out = {}
    for split, miou in values.items():
        name = (f'table{table:02d}-{log_method}_{dataset}_{split}labels_dinov2_base.log' if log_method == 'fixmatch'
                else f'table{table:02d}-{dataset}_{log_method}_{split}labels_dinov2_base.log')
        note = f'; log truncated: {truncated[split]}' if truncated and split in truncated else ''
        out[('UniMatch V2', dataset, split, 'DINOv2-B')] = Published(
            miou, _V2_LOG_TABLE.format(t=table) + note, f'{_V2}training-logs/{name}')
    return out


def _collect(*groups: dict[Key, Published]) -> dict[Key, Published]:
    table: dict[Key, Published] = {}
    for group in groups:
        for key, value in group.items():
            if key in table:
                raise RuntimeError(f'published result {key} is listed twice')
            table[key] = value
    return table


_CLIP = 'CLIP ViT-B/16'
PUBLISHED: dict[Key, Published] = _collect(
    # --- SemiVL (ECCV 2024), as cited by the UniMatch V2 README
    _rows('SemiVL', 'pascal', _CLIP, f'UniMatch V2 README Pascal VOC 2012 table, {_SEMIVL_CITED}',
          f'{_V2}README.md', {'92': 84.0, '183': 85.6, '366': 86.0, '732': 86.7, '1464': 87.3}),
    _rows('SemiVL', 'cityscapes', _CLIP, f'UniMatch V2 README Cityscapes table, {_SEMIVL_CITED}',
          f'{_V2}README.md', {'1_16': 77.9, '1_8': 79.4, '1_4': 80.3, '1_2': 80.6}),
    _rows('SemiVL', 'ade', _CLIP, f'UniMatch V2 README ADE20K table, {_SEMIVL_CITED}',
          f'{_V2}README.md', {'1_64': 33.7, '1_32': 35.1, '1_16': 37.2, '1_8': 39.4}),
    _rows('SemiVL', 'coco', _CLIP, f'UniMatch V2 README COCO table, {_SEMIVL_CITED}',
          f'{_V2}README.md', {'1_512': 50.1, '1_256': 52.8, '1_128': 53.6, '1_64': 55.4, '1_32': 56.5}),
    # --- AllSpark (CVPR 2024), README tables (= the paper's table images)
    _rows('AllSpark', 'pascal', 'MiT-B5', 'AllSpark README 4.1 (= paper table image docs/pascal_org.png)',
          f'{_ASP}README.md', {'92': 76.07, '183': 78.41, '366': 79.77, '732': 80.75, '1464': 82.12}),
    _rows('AllSpark', 'pascal', 'MiT-B5', 'AllSpark README 4.2 (= paper table image docs/pascal_aug.png)',
          f'{_ASP}README.md', {'1_16': 78.32, '1_8': 79.98, '1_4': 80.42, '1_2': 81.14}),
    _rows('AllSpark', 'cityscapes', 'MiT-B5', 'AllSpark README 4.3 (= paper table image docs/cityscapes.png)',
          f'{_ASP}README.md', {'1_16': 78.33, '1_8': 79.24, '1_4': 80.56, '1_2': 81.39}),
    _rows('AllSpark', 'coco', 'MiT-B5', 'AllSpark README 4.4 (= paper table image docs/coco.png)',
          f'{_ASP}README.md', {'1_512': 34.10, '1_256': 41.65, '1_128': 45.48, '1_64': 49.56}),
    # --- UniMatch (CVPR 2023), README tables; blended splits and ADE20K as cited by later papers
    _rows('UniMatch', 'pascal', 'ResNet-101', 'UniMatch README "Pascal VOC 2012" table (original split, crop 321)',
          f'{_V1}README.md', {'92': 75.2, '183': 77.2, '366': 78.8, '732': 79.9, '1464': 81.2}),
    _rows('UniMatch', 'cityscapes', 'ResNet-101', 'UniMatch README "Cityscapes" table',
          f'{_V1}README.md', {'1_16': 76.6, '1_8': 77.9, '1_4': 79.2, '1_2': 79.5}),
    _rows('UniMatch', 'cityscapes', 'ResNet-50', 'UniMatch README "Cityscapes" table',
          f'{_V1}README.md', {'1_16': 75.0, '1_8': 76.8, '1_4': 77.5, '1_2': 78.6}),
    _rows('UniMatch', 'coco', 'Xception-65', 'UniMatch README "COCO" table',
          f'{_V1}README.md', {'1_512': 31.9, '1_256': 38.9, '1_128': 44.4, '1_64': 48.2, '1_32': 49.8}),
    _rows('UniMatch', 'pascal', 'ResNet-101',
          'AllSpark paper table image docs/pascal_aug.png, UniMatch row (SECONDARY)',
          f'{_ASP}docs/pascal_aug.png', {'1_16': 78.1, '1_8': 78.4, '1_4': 79.2}),
    _rows('UniMatch', 'pascal', 'ResNet-101', 'UniMatch official training log '
          'training-logs/Pascal-VOC-2012/U2PL-Split-Size513/ResNet-101/<split>.log',
          f'{_V1}training-logs/Pascal-VOC-2012/U2PL-Split-Size513/ResNet-101/',
          {'u2pl_1_16': 80.94, 'u2pl_1_8': 81.92, 'u2pl_1_4': 80.43}),
    _rows('UniMatch', 'ade', 'ResNet-101',
          'UniMatch V2 README ADE20K table, "UniMatch V1" row (SECONDARY; same first author)',
          f'{_V2}README.md', {'1_64': 21.6, '1_32': 28.1, '1_16': 31.5, '1_8': 34.6}),
    # --- UniMatch V2 (TPAMI 2025), README tables (DINOv2-B)
    _rows('UniMatch V2', 'pascal', 'DINOv2-B', 'UniMatch V2 README "Pascal VOC 2012" table',
          f'{_V2}README.md', {'92': 86.3, '183': 87.9, '366': 88.9, '732': 90.0, '1464': 90.8}),
    _rows('UniMatch V2', 'cityscapes', 'DINOv2-B', 'UniMatch V2 README "Cityscapes" table',
          f'{_V2}README.md', {'1_16': 83.6, '1_8': 84.3, '1_4': 84.5, '1_2': 85.1}),
    _rows('UniMatch V2', 'ade20k', 'DINOv2-B', 'UniMatch V2 README "ADE20K" table',
          f'{_V2}README.md', {'1_64': 38.7, '1_32': 45.0, '1_16': 46.7, '1_8': 49.8}),
    _rows('UniMatch V2', 'coco', 'DINOv2-B', 'UniMatch V2 README "COCO" table',
          f'{_V2}README.md', {'1_512': 47.9, '1_256': 55.8, '1_128': 58.7, '1_64': 60.4, '1_32': 63.3}),
    # --- UniMatch V2, numbers only its training logs print (the README shows DINOv2-B only)
    _v2_logs('ade20k', 'DINOv2-B', 3, {'1_4': 52.02}),
    _v2_logs('pascal', 'DINOv2-S', 1, {'92': 79.03, '183': 85.50, '366': 85.85, '732': 86.69, '1464': 87.82}),
    _v2_logs('cityscapes', 'DINOv2-S', 2, {'1_16': 80.55, '1_8': 81.86, '1_4': 82.39, '1_2': 82.61}),
    _v2_logs('ade20k', 'DINOv2-S', 3, {'1_64': 31.48, '1_32': 38.10, '1_16': 40.69, '1_8': 44.41, '1_4': 45.76}),
    _v2_logs('coco', 'DINOv2-S', 4, {'1_512': 39.33, '1_256': 45.41, '1_128': 53.17, '1_64': 54.99,
                                     '1_32': 57.01}),
    _v2_logs('pascal', 'DINOv2-L', 8, {'92': 86.44, '183': 87.56, '366': 90.29, '732': 91.13, '1464': 91.21}),
    _v2_logs('ade20k', 'DINOv2-L', 8, {'1_64': 39.95, '1_32': 44.96, '1_16': 49.33, '1_8': 52.14, '1_4': 54.16}),
)


# the baselines a paper reports next to its method (run-config method -> its numbers), with the rule
# of the baseline's method: V2's fixmatch.py is reported by its best EMA-teacher mIoU (as V2 itself),
# its supervised.py (no EMA; best.pth on a strict '>') by its best mIoU
PAPER_BASELINES: dict[str, dict[str, dict[Key, Published]]] = {'UniMatch V2': {
    'fixmatch_ema': _collect(   # best EMA mIoU (Tab. 5 per the log names; its ablation: VOC-92, ADE-1/64, COCO-1/512)
        _v2_baseline_logs('fixmatch', 'pascal', 5, {'92': 83.83, '183': 87.37, '366': 88.21, '732': 89.88,
                                                    '1464': 90.21}),
        _v2_baseline_logs('fixmatch', 'ade20k', 5, {'1_64': 37.76, '1_32': 43.23, '1_16': 46.36, '1_8': 49.51,
                                                    '1_4': 51.03}),
        _v2_baseline_logs('fixmatch', 'coco', 5, {'1_512': 46.71, '1_256': 53.72, '1_128': 57.43})),
    'supervised': _collect(     # best mIoU of the labeled-only runs (no EMA)
        _v2_baseline_logs('labeled_only', 'pascal', 1, {'92': 76.86, '183': 82.07, '366': 85.27, '732': 87.15,
                                                        '1464': 88.3},
                          {'92': '44 of 60 epochs evaluated', '183': '42 of 60 epochs evaluated',
                           '366': '42 of 60 epochs evaluated'}),
        _v2_baseline_logs('labeled_only', 'cityscapes', 2, {'1_16': 80.79, '1_8': 82.65, '1_4': 83.98, '1_2': 84.39},
                          {'1_16': '87 of 180 epochs evaluated', '1_8': '88 of 180 epochs evaluated',
                           '1_4': '176 of 180 epochs evaluated'}),
        _v2_baseline_logs('labeled_only', 'ade20k', 3, {'1_64': 32.06, '1_32': 39.25, '1_16': 42.82, '1_8': 46.41,
                                                        '1_4': 49.02}),
        _v2_baseline_logs('labeled_only', 'coco', 4, {'1_512': 36.76, '1_256': 45.77, '1_128': 52.13,
                                                      '1_64': 56.24, '1_32': 59.5})),
}}


# a baseline that differs from the paper's run in its method alone (V2's fixmatch.py: the same data,
# model, optimizer, schedule, EMA teacher and evaluation as unimatch_v2.py; exp 64's yaml in configs/experiments):
# its run is the paper's when the run with the paper's method is a paper run
METHOD_SWAP_BASELINES = {('UniMatch V2', 'fixmatch_ema')}


def published_table(paper: str, method: str) -> dict[Key, Published] | None:
    """The numbers `paper` reports for runs of `method`: its own method's (PUBLISHED), a baseline's
    (PAPER_BASELINES), or None when the paper reports none for that method."""
    if method == PAPER_METHODS.get(paper):
        return PUBLISHED
    return PAPER_BASELINES.get(paper, {}).get(method)


def _reproduces(exp_id: int) -> str | None:
    """The paper experiment `exp_id` reproduces (None for unknown experiments too)."""
    from .registry import UnknownExperiment, get_experiment
    try:
        return get_experiment(exp_id).reproduces
    except UnknownExperiment:
        return None


def published_key(paper: str, cfg: dict[str, Any]) -> Key | None:
    """The key of a run config in `published_table(paper, method)`, or None when the run is not the
    paper's setting (a method the paper reports no number for, a model it does not use)."""
    if paper not in PAPER_METHODS:
        raise ValueError(f'unknown paper {paper!r}; known: {", ".join(PAPERS)}')
    if published_table(paper, str(cfg.get('method'))) is None:
        return None
    backbone = MODEL_BACKBONES.get(str(cfg.get('model')))
    if backbone is None:
        return None
    return paper, str(cfg.get('dataset')), str(cfg.get('split')), backbone


def published_result(exp_id: int, cfg: dict[str, Any]) -> Published | None:
    """The published mIoU of a run of experiment `exp_id`, or None (see the module doc)."""
    return published_for(_reproduces(exp_id), cfg)


def reproduced_paper(exp_id: int) -> str | None:
    """The paper experiment `exp_id` reproduces, or None (ask once for many runs, then `published_for`)."""
    return _reproduces(exp_id)


def published_for(paper: str | None, cfg: dict[str, Any]) -> Published | None:
    """The published mIoU of a run config of an experiment reproducing `paper` (None: none)."""
    if paper is None:
        return None
    key = published_key(paper, cfg)
    table = published_table(paper, str(cfg.get('method')))
    if key is None or table is None or key not in table or not is_paper_run(paper, cfg):
        return None
    return table[key]


def is_paper_run(paper: str, cfg: dict[str, Any]) -> bool:
    """Whether `cfg` is a generated run of a built-in experiment reproducing `paper`, unchanged
    (seed, runtime options, experiment id, sweep record and data folder aside), or, for a baseline of
    METHOD_SWAP_BASELINES, such a run with the baseline's method."""
    keys = _paper_run_keys(paper)
    if (paper, cfg.get('method')) in METHOD_SWAP_BASELINES:
        return paper_key({**cfg, 'method': PAPER_METHODS[paper]}) in keys
    return paper_key(cfg) in keys


@cache
def _paper_run_keys(paper: str) -> frozenset[str]:
    from .registry import EXPERIMENTS, get_runs
    return frozenset(paper_key(run) for exp in EXPERIMENTS.values() if exp.reproduces == paper
                     for run in get_runs(exp.exp_id))


def report_rule(cfg: dict[str, Any], published: Published | None = None) -> str:
    """Which of our numbers compares with the paper's (REPORT_RULES): the published row's rule, else
    the rule of the run's method ('best' for a method the registry does not know)."""
    if published is not None and published.report is not None:
        return published.report
    info = METHODS.get(str(cfg.get('method')))
    return info.report if info is not None else 'best'
