"""AllSpark (CVPR 2024) experiments 50-53: MiT-B5 + AllSpark decoder with its own method.

xmed-lab/AllSpark `configs/{pascal,cityscapes,coco}_allspark.yaml` and `scripts/train.sh`: 4 GPUs,
SGD (backbone at lr, the rest at lr x lr_multi), UniMatch's augmentation, strong photometric view
of the labeled images, evaluation 'original' (cityscapes: sliding window). The release's defects
are fixed by default (README, "Release switches"); COCO's missing warmup_epoch is 1 here, the
same 1/16 of the schedule as pascal (5/80) and cityscapes (15/240).
"""
from __future__ import annotations

from typing import Any

from .params import Experiment

BASE = {'method': 'allspark', 'model': 'mmseg.allspark-mitb5', 'img_scale': None, 'crop_size': 513,
        'opt': 'original', 'lr': 1e-3, 'disable_dropout': False, 'criterion': 'CELoss',
        'criterion_u': 'CELoss', 'eval_mode': 'original', 'warmup_epoch': 5}


def _runs(splits: tuple[str, ...], **settings: Any) -> tuple[dict[str, Any], ...]:
    return tuple({'split': split, **BASE, **settings} for split in splits)


EXPERIMENTS = [
    Experiment(50, 'AllSpark on Pascal VOC (original splits 92..1464), MiT-B5, crop 513',
               _runs(('92', '183', '366', '732', '1464')), reproduces='AllSpark'),
    Experiment(51, 'AllSpark on Pascal VOC blended (splits 1/16..1/2 of train_aug), MiT-B5, crop 513',
               _runs(('1_16', '1_8', '1_4', '1_2')), reproduces='AllSpark'),
    Experiment(52, 'AllSpark on Cityscapes, MiT-B5, crop 801, OHEM, splits 1/16..1/2',
               _runs(('1_16', '1_8', '1_4', '1_2'), dataset='cityscapes', crop_size=801, epochs=240,
                     lr=5e-3, criterion='OHEM', warmup_epoch=15, eval_mode='sliding_window'),
               reproduces='AllSpark'),
    Experiment(53, 'AllSpark on COCO, MiT-B5, crop 513, 4 images per GPU, splits 1/512..1/64',
               _runs(('1_512', '1_256', '1_128', '1_64'), dataset='coco', epochs=10, batch_size=4,
                     warmup_epoch=1), reproduces='AllSpark'),
]
