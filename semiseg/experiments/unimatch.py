"""UniMatch (CVPR 2023) experiments 30-32: DeepLabV3+ with UniMatch's own method and configs.

LiheYoung/UniMatch `configs/{pascal,cityscapes,coco}.yaml` and `scripts/train.sh`: 4 GPUs x 2
images, SGD (backbone at lr, the rest at lr x lr_multi), UniMatch's long-side rescale (no
img_scale), evaluation 'original' (cityscapes: sliding window). Xception-65 for COCO as released.
"""
from __future__ import annotations

from typing import Any

from .params import Experiment

# what every UniMatch run shares: its method, augmentation and loss settings
BASE = {'method': 'unimatch', 'img_scale': None, 'opt': 'original', 'disable_dropout': False,
        'criterion': 'CELoss', 'criterion_u': 'CELoss', 'eval_mode': 'original'}


def _runs(splits: tuple[str, ...], **settings: Any) -> tuple[dict[str, Any], ...]:
    return tuple({'split': split, **BASE, **settings} for split in splits)


EXPERIMENTS = [
    Experiment(30, 'UniMatch on Pascal VOC, DeepLabV3+ ResNet-101, crop 321, splits 92..1464',
               _runs(('92', '183', '366', '732', '1464'), model='mmseg.dlv3p-r101', crop_size=321,
                     lr=1e-3, conf_thresh=0.95), reproduces='UniMatch'),
    Experiment(31, 'UniMatch on Cityscapes, DeepLabV3+ ResNet-101, crop 801, OHEM, splits 1/16..1/2',
               _runs(('1_16', '1_8', '1_4', '1_2'), dataset='cityscapes', model='mmseg.dlv3p-r101',
                     crop_size=801, epochs=240, lr=5e-3, criterion='OHEM', conf_thresh=0.0,
                     eval_mode='sliding_window'), reproduces='UniMatch'),
    Experiment(32, 'UniMatch on COCO, DeepLabV3+ Xception-65, crop 513, splits 1/512..1/32',
               _runs(('1_512', '1_256', '1_128', '1_64', '1_32'), dataset='coco', model='mmseg.dlv3p-xc65',
                     crop_size=513, epochs=30, lr=4e-3, conf_thresh=0.95), reproduces='UniMatch'),
]
