"""SemiVL (ECCV 2024) experiments 40-44, as released (google-research/semivl `experiments.py`).

Every run is the defaults plus the overrides below; the run index is the list position.
"""
from __future__ import annotations

from typing import Any

from .params import Experiment

VLG_MODEL = 'mmseg.vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb'
# the released runs train both losses with plain cross-entropy
CE = {'criterion': 'CELoss', 'criterion_u': 'CELoss'}
# MaskCLIP consistency guidance as released: lambda 0.1 decaying to 0, confident pixels only
MCC = {'maskclip_consistency_lambda': [0.1, 0], 'mcc_conf_thresh': 0.9, 'mcc_loss_reduce': 'mean_all'}
# COCO / ADE: 8 GPUs with one image each
EIGHT_GPUS = {'n_nodes': 1, 'n_gpus': 8, 'batch_size': 1}


def _voc_main() -> list[dict[str, Any]]:
    """Exp 40: SemiVL on Pascal VOC, one run per split."""
    base = {'model': VLG_MODEL, 'lr': 1e-4, 'backbone_lr_mult': 0.01, **CE, **MCC,
            'mcc_text': 'concept4_single'}  # class definitions for the guidance
    return [{'split': split, **base} for split in ('92', '183', '366', '732', '1464')]


def _voc_ablation() -> list[dict[str, Any]]:
    """Exp 41: decoder / backbone ablation on VOC 92 and 1464 (run = 6 * split + variant)."""
    variants = [
        # ZegCLIP baseline; the release passes an integer 10 (the default's value)
        {'model': 'mmseg.vlm-zegclip-rd-pt-vitb', 'backbone_lr_mult': 10},
        {'model': 'mmseg.vlm-dlv3p-bn11-sk4-ft-tvit-in1k', 'backbone_lr_mult': 0.001, **CE},
        {'model': 'mmseg.vlm-dlv3p-bn12-sk4-ft-mcvitb', 'backbone_lr_mult': 0.001, **CE},
        {'model': 'mmseg.vlm-dlv3p-bn12-sk4-ftap-mcvitb', 'backbone_lr_mult': 0.01, **CE},
        {'model': VLG_MODEL, 'backbone_lr_mult': 0.01, **CE},
        {'model': VLG_MODEL, 'backbone_lr_mult': 0.01, **CE, **MCC},
    ]
    return [{'split': split, 'lr': 1e-4, **variant} for split in ('92', '1464') for variant in variants]


def _coco_ade(dataset: str, splits: tuple[str, ...], **extra: Any) -> list[dict[str, Any]]:
    """Exps 42 / 43: the VLG model with guidance on 8 GPUs."""
    base = {'dataset': dataset, **EIGHT_GPUS, 'model': VLG_MODEL, 'lr': 4e-4,
            'backbone_lr_mult': 0.001, **CE, **MCC, **extra}
    return [{'split': split, **base} for split in splits]


def _cityscapes() -> list[dict[str, Any]]:
    """Exp 44: Cityscapes, 801 crops, iteration-based schedule, averaged class definitions."""
    base = {
        'dataset': 'cityscapes', 'img_scale': None, 'crop_size': 801,
        'epochs': None, 'iters': 83760, **EIGHT_GPUS,
        'conf_mode': 'pixelavg', 'eval_every': 10, 'eval_mode': 'sliding_window',
        'model': 'mmseg.vlm-vlg-aspp-s2p4-skr04-ftap-mcvitb',
        'lr': 5e-5, 'backbone_lr_mult': 0.1, 'conv_enc_lr_mult': 0.1, **CE, **MCC,
        'mcc_text': 'concept3_single', 'text_embedding_variant': 'conceptavg3_single',
        'renorm_clip_img': True,
    }
    return [{'split': split, **base} for split in ('1_30', '1_16', '1_8', '1_4', '1_2')]


EXPERIMENTS = [
    Experiment(40, 'SemiVL on Pascal VOC (VLG decoder + MaskCLIP guidance), splits 92..1464',
               tuple(_voc_main()), reproduces='SemiVL'),
    Experiment(41, 'SemiVL ablation on VOC 92 / 1464: ZegCLIP, DeepLabv3+ and VLG decoders',
               tuple(_voc_ablation())),
    Experiment(42, 'SemiVL on COCO, splits 1/512..1/32 (8 GPUs, 10 epochs)',
               tuple(_coco_ade('coco', ('1_512', '1_64', '1_128', '1_256', '1_32'),
                               img_scale=None, epochs=10)), reproduces='SemiVL'),
    Experiment(43, 'SemiVL on ADE20K, splits 1/128..1/8 (8 GPUs, 40 epochs)',
               tuple(_coco_ade('ade', ('1_128', '1_64', '1_32', '1_16', '1_8'), epochs=40)), reproduces='SemiVL'),
    Experiment(44, 'SemiVL on Cityscapes, splits 1/30..1/2 (801 crops, 83.8K iterations)',
               tuple(_cityscapes()), reproduces='SemiVL'),
]
