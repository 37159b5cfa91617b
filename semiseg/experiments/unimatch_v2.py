"""UniMatch V2 (TPAMI 2025) experiments 60-63, and experiment 65: SemiVL's model with its method.

LiheYoung/UniMatch-V2 `configs/{pascal,cityscapes,ade20k,coco}.yaml` and `unimatch_v2.py`: 4 GPUs,
AdamW (encoder at 5e-6, DPT head x40, weight decay 0.01), crop 518 (cityscapes 798), EMA teacher
0.996, evaluation 'original' at a multiple of 14 (cityscapes: shifted sliding window). Each
experiment lists the DINOv2-S runs first (every split in the release's order), then DINOv2-B,
whose numbers the paper reports; Pascal and ADE20K then list DINOv2-L (runs 10-14, the release's
`training-logs/table08-*_dinov2_large.log`: the same yamls with `backbone: dinov2_large`).
ADE20K uses the release's own preparation (dataset 'ade20k'); its yaml's lock_backbone: True is
not what the reported runs used (their logs say False).
"""
from __future__ import annotations

from typing import Any

from .params import Experiment

BASE = {'method': 'unimatch_v2', 'img_scale': None, 'crop_size': 518, 'opt': 'adamw2', 'lr': 5e-6,
        'lr_multi': 40.0, 'batch_size': 4, 'disable_dropout': False, 'criterion': 'CELoss',
        'criterion_u': 'CELoss', 'conf_thresh': 0.95, 'eval_mode': 'original', 'eval_size_multiple': 14}
ENCODERS = ('mmseg.dpt-dinov2s', 'mmseg.dpt-dinov2b')


def _runs(splits: tuple[str, ...], encoders: tuple[str, ...] = ENCODERS, **settings: Any) -> tuple[dict[str, Any], ...]:
    return tuple({'split': split, **BASE, 'model': model, **settings} for model in encoders for split in splits)


def _with_large(splits: tuple[str, ...], **settings: Any) -> tuple[dict[str, Any], ...]:
    """S and B runs, then the DINOv2-L runs appended (run ids of S and B unchanged)."""
    return _runs(splits, **settings) + _runs(splits, encoders=('mmseg.dpt-dinov2l',), **settings)


def _supervised(splits: tuple[str, ...], per_gpu: int, labeled_samples: int,
                **settings: Any) -> tuple[dict[str, Any], ...]:
    """LiheYoung/UniMatch-V2 `supervised.py` on the DINOv2-B runs: labeled data only, the per-GPU batch
    doubled, the labeled list repeated to `labeled_samples` per epoch when it is shorter."""
    return _runs(splits, encoders=('mmseg.dpt-dinov2b',), **{**settings, 'method': 'supervised',
                                                            'batch_size': per_gpu,
                                                            'labeled_samples': labeled_samples})


CITYSCAPES = {'dataset': 'cityscapes', 'crop_size': 798, 'epochs': 180, 'batch_size': 2, 'criterion': 'OHEM',
              'eval_mode': 'shifted_sliding_window', 'eval_size_multiple': None}

EXPERIMENTS = [
    Experiment(60, 'UniMatch V2 on Pascal VOC, DINOv2-S, -B, then -L + DPT, splits 92..1464',
               _with_large(('92', '183', '366', '732', '1464'), epochs=60), reproduces='UniMatch V2'),
    Experiment(61, 'UniMatch V2 on Cityscapes, DINOv2-S then -B + DPT, crop 798, splits 1/16..1/2',
               _runs(('1_16', '1_8', '1_4', '1_2'), **CITYSCAPES), reproduces='UniMatch V2'),
    Experiment(62, 'UniMatch V2 on COCO, DINOv2-S then -B + DPT, splits 1/512..1/32',
               _runs(('1_512', '1_256', '1_128', '1_64', '1_32'), dataset='coco', epochs=20),
               reproduces='UniMatch V2'),
    Experiment(63, 'UniMatch V2 on ADE20K (the release\'s preparation), DINOv2-S, -B, then -L + DPT, splits 1/64..1/4',
               _with_large(('1_64', '1_32', '1_16', '1_8', '1_4'), dataset='ade20k', epochs=60, batch_size=2),
               reproduces='UniMatch V2'),
    # ours: SemiVL's model (exp 40: CLIP ViT-B/16, VLG decoder, class definitions, MaskCLIP guidance)
    # trained with UniMatch V2's method (EMA teacher, complementary dropout); no published number
    Experiment(65, 'Ours: SemiVL model (VLG + MaskCLIP guidance) trained with UniMatch V2, VOC 92..1464', tuple(
        {'split': split, 'method': 'unimatch_v2', 'model': 'mmseg.vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb',
         'lr': 1e-4, 'backbone_lr_mult': 0.01, 'criterion': 'CELoss', 'criterion_u': 'CELoss',
         'conf_thresh': 0.95, 'maskclip_consistency_lambda': [0.1, 0], 'mcc_conf_thresh': 0.9,
         'mcc_loss_reduce': 'mean_all', 'mcc_text': 'concept4_single'}
        for split in ('92', '183', '366', '732', '1464'))),
    # the release's labeled-only baseline (supervised.py): batch x2, short labeled lists repeated, no EMA
    Experiment(66, 'UniMatch V2 baseline: labeled only (supervised.py), DINOv2-B, VOC / Cityscapes / COCO / ADE20K',
               _supervised(('92', '183', '366', '732', '1464'), 8, 3000, epochs=60)
               + _supervised(('1_16', '1_8', '1_4', '1_2'), 4, 3000, **CITYSCAPES)
               + _supervised(('1_512', '1_256', '1_128', '1_64', '1_32'), 8, 30000, dataset='coco', epochs=20)
               + _supervised(('1_64', '1_32', '1_16', '1_8', '1_4'), 4, 6000, dataset='ade20k', epochs=60),
               reproduces='UniMatch V2'),   # its training logs' numbers (published.PAPER_BASELINES)
]
