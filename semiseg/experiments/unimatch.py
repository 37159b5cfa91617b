"""UniMatch (CVPR 2023) experiments 30-32: DeepLabV3+ with UniMatch's own method and configs.

LiheYoung/UniMatch `configs/{pascal,cityscapes,coco}.yaml` and `scripts/train.sh`: 4 GPUs x 2
images, SGD (backbone at lr, the rest at lr x lr_multi), UniMatch's long-side rescale (no
img_scale), evaluation 'original' (cityscapes: sliding window). Xception-65 for COCO as released.
Later runs are appended so run ids stay: exp 31 runs 4-7 are the ResNet-50 Cityscapes runs of the
README's table (cityscapes.yaml with `backbone: resnet50`). Exp 33 is the release's VOC blended
runs on the U2PL lists at crop 513 (`training-logs/Pascal-VOC-2012/U2PL-Split-Size513/ResNet-101/`:
pascal.yaml with crop 513, batch 4 per GPU on 2 GPUs, lists `splits/pascal/u2pl_*`).
"""
from __future__ import annotations

from typing import Any

from .params import Experiment

# what every UniMatch run shares: its method, augmentation and loss settings
BASE = {'method': 'unimatch', 'img_scale': None, 'opt': 'original', 'disable_dropout': False,
        'criterion': 'CELoss', 'criterion_u': 'CELoss', 'eval_mode': 'original'}


CITYSCAPES = {'dataset': 'cityscapes', 'crop_size': 801, 'epochs': 240, 'lr': 5e-3, 'criterion': 'OHEM',
              'conf_thresh': 0.0, 'eval_mode': 'sliding_window'}


def _runs(splits: tuple[str, ...], **settings: Any) -> tuple[dict[str, Any], ...]:
    return tuple({'split': split, **BASE, **settings} for split in splits)


EXPERIMENTS = [
    Experiment(30, 'UniMatch on Pascal VOC, DeepLabV3+ ResNet-101, crop 321, splits 92..1464',
               _runs(('92', '183', '366', '732', '1464'), model='mmseg.dlv3p-r101', crop_size=321,
                     lr=1e-3, conf_thresh=0.95), reproduces='UniMatch'),
    Experiment(31, 'UniMatch on Cityscapes, DeepLabV3+ ResNet-101 then ResNet-50, crop 801, OHEM, splits 1/16..1/2',
               tuple(run for model in ('mmseg.dlv3p-r101', 'mmseg.dlv3p-r50')
                     for run in _runs(('1_16', '1_8', '1_4', '1_2'), **CITYSCAPES, model=model)),
               reproduces='UniMatch'),
    Experiment(32, 'UniMatch on COCO, DeepLabV3+ Xception-65, crop 513, splits 1/512..1/32',
               _runs(('1_512', '1_256', '1_128', '1_64', '1_32'), dataset='coco', model='mmseg.dlv3p-xc65',
                     crop_size=513, epochs=30, lr=4e-3, conf_thresh=0.95), reproduces='UniMatch'),
    Experiment(33, 'UniMatch on Pascal VOC blended (U2PL lists), DeepLabV3+ ResNet-101, crop 513, 2 GPUs x 4, '
                   'splits 1/16..1/4',
               _runs(('u2pl_1_16', 'u2pl_1_8', 'u2pl_1_4'), model='mmseg.dlv3p-r101', crop_size=513,
                     n_gpus=2, batch_size=4, lr=1e-3, conf_thresh=0.95), reproduces='UniMatch'),
]
