"""Build a segmentor from a run config (spec §3.1).

The run config's `model` ('mmseg.<name>') selects `configs/models/<name>.py`, an mmseg-style
config whose `model` dict names registered types. A model config may define its own
`clip_encoder` dict (the tiny demo does); otherwise `cfg['clip_encoder']` names a config file
whose `backbone` dict becomes the frozen guidance encoder.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from semiseg.models.concept_groups import concept_groups_for

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'models'
TEXT_PREFIX = {'pascal': 'voc12_wbg', 'cityscapes': 'cityscapes', 'coco': 'coco', 'ade': 'ade'}


class UnknownModel(KeyError):
    """A model name without a config file under configs/models/."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def available_models() -> list[str]:
    """Model config names under configs/models/ (use as 'mmseg.<name>')."""
    return sorted(p.stem for p in CONFIG_DIR.glob('*.py'))


def model_config_path(name: str) -> Path:
    """The config file for 'mmseg.<name>' or '<name>'; the error lists what exists."""
    stem = name[len('mmseg.'):] if name.startswith('mmseg.') else name
    path = CONFIG_DIR / f'{stem}.py'
    if not path.is_file():
        raise UnknownModel(f'unknown model {name!r}: no {path}. Available: '
                           f'{", ".join("mmseg." + m for m in available_models())}')
    return path


def load_model_config(name: str) -> dict[str, Any]:
    """The whole config file as a plain dict."""
    return Config.fromfile(str(model_config_path(name))).to_dict()


def _strip_pretrained(module_cfg: dict | None) -> None:
    """Random init: drop weight sources from a module config (recursively)."""
    if not isinstance(module_cfg, dict):
        return
    if 'pretrained' in module_cfg:
        module_cfg['pretrained'] = None
    init = module_cfg.get('init_cfg')
    if isinstance(init, dict) and init.get('type') == 'Pretrained':
        module_cfg['init_cfg'] = None
    for value in module_cfg.values():
        if isinstance(value, dict):
            _strip_pretrained(value)


def _set_img_size(model_cfg: dict, file_cfg: dict, crop: int) -> None:
    """Backbone and head work at the crop size (spec §3.1 step 2)."""
    if 'img_size' not in file_cfg or file_cfg['img_size'] == crop:
        return
    if 'img_size' in model_cfg.get('backbone', {}):
        model_cfg['backbone']['img_size'] = (crop, crop)
    if 'img_size' in model_cfg.get('decode_head', {}):
        model_cfg['decode_head']['img_size'] = crop


def _clip_encoder_cfg(cfg: dict, file_cfg: dict) -> dict | None:
    name = cfg.get('clip_encoder')
    if not name:
        return None
    if 'clip_encoder' in file_cfg:  # a model-specific guidance encoder (e.g. the tiny demo)
        return copy.deepcopy(file_cfg['clip_encoder'])
    enc = load_model_config(name)
    if 'backbone' not in enc:
        raise ValueError(f'clip encoder config {model_config_path(name)} has no `backbone` dict')
    return enc['backbone']


def _mcc_variant(cfg: dict) -> str:
    variant = cfg.get('mcc_text', 'same')
    return cfg.get('text_embedding_variant', 'single') if variant == 'same' else variant


def _concept_groups(cfg: dict, rows: int, nclass: int) -> list[list[int]] | None:
    if rows == nclass:
        return None
    given = (cfg.get('model_args') or {}).get('mcc_concept_groups')
    if given is not None:
        return given
    from semiseg.models.text_embeddings import concept_groups
    try:
        groups = concept_groups(cfg, 'mcc')
    except (KeyError, ValueError):  # unknown dataset/variant: fall back to the release tables
        groups = None
    stem = f"{TEXT_PREFIX.get(cfg.get('dataset'), cfg.get('dataset'))}_{_mcc_variant(cfg)}"
    groups = groups if groups is not None else concept_groups_for(stem)
    if groups is None:
        raise ValueError(f'the mcc text embedding has {rows} rows for {nclass} classes and no '
                         f'class->concept grouping is known for {stem!r}; set '
                         "model_args.mcc_concept_groups (list of row-index lists per class)")
    return groups


def _resolve_text(cfg: dict, which: str) -> torch.Tensor:
    from semiseg.models.text_embeddings import resolve_text_embedding
    return resolve_text_embedding(cfg, which)


def build_segmentor(cfg: dict, pretrained: bool = True,
                    text_embedding: torch.Tensor | None = None,
                    mcc_text_embedding: torch.Tensor | None = None) -> torch.nn.Module:
    """Build the segmentor of a run config.

    `pretrained=False` gives random init (tests, checkpoint loading); `text_embedding` /
    `mcc_text_embedding` replace the files the config points to.
    """
    for key in ('model', 'nclass', 'crop_size'):
        if key not in cfg:
            raise KeyError(f'run config lacks {key!r}, needed to build the model')
    import semiseg.models  # noqa: F401  (registers every backbone / head / segmentor)

    file_cfg = load_model_config(cfg['model'])
    if 'model' not in file_cfg:
        raise ValueError(f'{model_config_path(cfg["model"])} defines no `model` dict')
    model_cfg = copy.deepcopy(file_cfg['model'])
    model_cfg['decode_head']['num_classes'] = cfg['nclass']
    _set_img_size(model_cfg, file_cfg, cfg['crop_size'])

    clip_cfg = _clip_encoder_cfg(cfg, file_cfg)
    if clip_cfg is not None and cfg.get('mcc_fix_resize_pos') and 'img_size' in clip_cfg:
        clip_cfg['img_size'] = (cfg['crop_size'], cfg['crop_size'])  # spec §2.6
    if clip_cfg is not None:
        model_cfg['clip_encoder'] = clip_cfg
    model_args = dict(cfg.get('model_args') or {})
    model_cfg.update(model_args)
    model_cfg['disable_dropout'] = bool(cfg.get('disable_dropout', False))
    model_cfg['fp_rate'] = float(cfg.get('fp_rate', 0.5))

    if text_embedding is None:
        text_embedding = _resolve_text(cfg, 'text')
    if mcc_text_embedding is None and clip_cfg is not None:
        mcc_text_embedding = _resolve_text(cfg, 'mcc')
    model_cfg['text_embedding'] = text_embedding
    if mcc_text_embedding is not None:
        mcc = torch.as_tensor(mcc_text_embedding)
        model_cfg['mcc_text_embedding'] = mcc
        model_cfg['mcc_concept_groups'] = _concept_groups(cfg, mcc.shape[0], cfg['nclass'])

    if not pretrained:
        for key in ('backbone', 'clip_encoder', 'conv_encoder', 'decode_head'):
            _strip_pretrained(model_cfg.get(key))
    model = MODELS.build(model_cfg)
    if pretrained:
        model.init_weights()
    logger.info('built %s: %.2fM parameters', cfg['model'],
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model
