"""Experiment 0: the built-in CPU demo on the procedural toy dataset.

A tiny random-init CLIP-style ViT with a small VLG head, trained for 6 short epochs (48
iterations each) on 4 labeled and 192 unlabeled images, so one run finishes in a minute or two
on a laptop CPU and the three methods can be compared end to end.
"""
from __future__ import annotations

from .params import Experiment

TOY = {
    'dataset': 'toy', 'split': '4', 'img_scale': None, 'crop_size': 64,
    'model': 'mmseg.vlm-vlg-aspp-s2p2-sk02-ft-tinyvit',
    'n_gpus': 1, 'n_nodes': 1, 'batch_size': 4, 'epochs': 6,
    'eval_mode': 'sliding_window', 'eval_every': 2,
    'lr': 1e-3, 'backbone_lr_mult': 1.0,   # random init: the backbone trains at the full rate
    'conf_thresh': 0.8,   # 5 classes, a few short epochs: 0.95 would mask out nearly every pixel
    'criterion': 'CELoss', 'criterion_u': 'CELoss',
    'options': {'num_workers': 0, 'log_every': 10},  # in-process loading; frequent logs
}

EXPERIMENTS = [
    Experiment(0, 'CPU demo on the toy dataset: supervised vs SemiVL without / with guidance', (
        {**TOY, 'method': 'supervised'},
        {**TOY, 'method': 'semivl', 'maskclip_consistency_lambda': 0},
        {**TOY, 'method': 'semivl', 'maskclip_consistency_lambda': [0.1, 0]},
    )),
]
