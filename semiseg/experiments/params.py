"""Run parameters: the inputs from which a run config and its name are derived.

Defaults are those of the SemiVL release (google-research/semivl `experiments.py`,
`generate_experiment_cfgs`); an experiment run is these defaults plus a small dict of overrides.
`config.build_config` turns them into the config, `naming.run_name` reads the name off it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from semiseg.data.datasets import DATASETS, DatasetInfo
from semiseg.engine.options import ENGINE_OPTIONS


def default_lr_multi(dataset: str) -> int:
    """The non-backbone learning-rate factor when a run sets none: the dataset entry's `lr_multi`
    (1 on Cityscapes, 10 elsewhere: LiheYoung/UniMatch `configs/*.yaml`); 10 for custom datasets."""
    info = DATASETS.get(dataset)
    return info.lr_multi if info else DatasetInfo.lr_multi

@dataclass(frozen=True)
class RunParams:
    """Everything that defines one run, plus the engine options it sets."""

    exp_id: int                                        # experiment id (required)
    # --- schedule / hardware
    gpu_model: str = 'a100'                            # recorded only
    n_gpus: int = 4                                    # GPUs per node the run was designed for
    n_nodes: int = 1                                   # recorded only; the launcher ignores it
    batch_size: int = 2                                # images per GPU (labeled and unlabeled each)
    epochs: int | None = 80                            # training epochs (None when iters is set)
    iters: int | None = None                           # total iterations (overrides epochs)
    scheduler_max_iters: int | None = None             # poly schedule length if not total_iters
    # --- data
    dataset: str = 'pascal'                            # a built-in or custom dataset name
    split: str = '92'                                  # split folder name under splits/
    img_scale: list[int] | None = field(default_factory=lambda: [2048, 512])  # train resize scale
    scale_ratio_range: tuple[float, float] = (0.5, 2.0)  # random rescale range
    crop_size: int = 512                               # square training crop
    labeled_photometric_distortion: bool = False       # photometric aug on labeled images
    renorm_clip_img: bool = False                      # re-normalise input to CLIP statistics
    # --- model
    model: str = 'mmseg.zegclip-vitb'                  # model config name (always overridden)
    model_args: dict[str, Any] = field(default_factory=dict)  # deep-merged into the model config
                                                       # (e.g. {'decode_head': {'release_patch_num': True}})
    text_embedding_variant: str = 'single'             # class text embedding variant
    mcc_text: str = 'same'                             # MaskCLIP guidance text ('same': as above)
    pl_text: str = 'same'                              # pseudo-label text ('same': as above)
    clip_encoder: str = 'mcvit16'                      # guidance encoder used when lambda != 0
    # --- method
    method: str = 'semivl'                             # a name of semiseg.methods.registry.METHODS
    epoch_over: str = 'labeled'                        # labeled-only methods: an epoch is a pass over the
                                                       # labeled list (release) or the unlabeled one
    labeled_samples: int | None = None                 # labeled-only: the labeled list repeated to this many
                                                       # samples per epoch when shorter (UniMatch V2 supervised.py)
    use_fp: bool = True                                # UniMatch feature perturbation
    conf_mode: str = 'pixelwise'                       # pixelwise, pixelratio, pixelavg
    conf_thresh: float = 0.95                          # pseudo-label confidence threshold
    pleval: bool = True                                # pseudo-labels from an eval-mode forward
    disable_dropout: bool = True                       # no dropout in the training forwards
    fp_rate: float = 0.5                               # feature-perturbation dropout rate
    maskclip_consistency_lambda: float | list[float] = 0  # MCC weight, scalar or [start, end]
    mcc_conf_thresh: float = 0.75                      # MaskCLIP guidance confidence threshold
    mcc_loss_reduce: str = 'mean'                      # mean, mean_valid, mean_all
    mcc_fix_resize_pos: bool = False                   # fixed pos-embed resize for crop != 512
    criterion: str = 'mmseg'                           # labeled loss: mmseg, CELoss, OHEM
    criterion_u: str = 'mmseg'                         # unlabeled loss: mmseg, CELoss
    warmup_epoch: int | None = 5                       # AllSpark: epochs before the semantic memory is read
                                                       # (None: as the release's coco config, which lacks it)
    ignore_unlabeled_padding: bool = True              # AllSpark: padded unlabeled pixels are not trained on
                                                       # (False: as released, padding gets pseudo-labels)
    ema_decay: float = 0.996                           # UniMatch V2: EMA teacher decay cap
    lock_backbone: bool = False                        # UniMatch V2: freeze the encoder
    # --- optimizer
    opt: str = 'adamw'                                 # adamw (SemiVL), adamw2 (UniMatch V2: backbone /
                                                       # the rest), original (UniMatch / AllSpark SGD)
    lr: float = 1e-4                                   # base learning rate
    lr_multi: float | None = None                      # adamw2 / original: lr factor of the non-backbone
                                                       # parameters (None: 1 for cityscapes, else 10)
    backbone_lr_mult: float = 10.0                     # backbone lr multiplier
    conv_enc_lr_mult: float = 1.0                      # conv encoder lr multiplier
    warmup_iters: int = 0                              # linear warmup iterations
    # --- evaluation
    eval_mode: str = 'zegclip_sliding_window'          # original, sliding_window, zegclip_sliding_window
    eval_every: int = 1                                # evaluate every n epochs (and at the end)
    eval_size_multiple: int | None = None              # 'original' eval: forward at a multiple of it (ViT
                                                       # patch; UniMatch V2: 14)
    nccl_p2p_disable: bool = False                     # recorded only
    # --- ours
    options: dict[str, Any] = field(default_factory=dict)  # engine options set by this run

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(ENGINE_OPTIONS))
        if unknown:
            raise ValueError(f'unknown engine option(s) {", ".join(unknown)}; '
                             f'known: {", ".join(ENGINE_OPTIONS)}')
        if self.epochs is not None and self.iters is not None:
            raise ValueError(f'run sets both epochs ({self.epochs}) and iters ({self.iters}); '
                             f'set epochs=None when using iters')


def make_params(exp_id: int, overrides: dict[str, Any]) -> RunParams:
    """RunParams from the defaults plus `overrides`, rejecting unknown names."""
    names = {f.name for f in dataclasses.fields(RunParams)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f'unknown run parameter(s) {", ".join(unknown)}; known: {", ".join(sorted(names))}')
    return RunParams(exp_id=exp_id, **overrides)


@dataclass(frozen=True)
class Experiment:
    """One experiment: an id, a one-line description and the overrides of each run, in order."""

    exp_id: int                             # the id given to --exp
    description: str                        # one line shown by --list
    runs: tuple[dict[str, Any], ...]        # per run: overrides of the RunParams defaults
    reproduces: str | None = None           # paper whose table these runs reproduce (published
                                            # numbers attach to them); None: ablations, demos

    def params(self) -> list[RunParams]:
        """The RunParams of every run, in run-index order."""
        return [make_params(self.exp_id, overrides) for overrides in self.runs]
