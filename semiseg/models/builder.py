"""Build a segmentor from a run config.

The run config's `model` ('mmseg.<name>') selects `configs/models/<name>.py`, an mmseg-style
config whose `model` dict names registered types (google-research/semivl `model/builder.py`,
`build_model`, for the VLM models). Text embeddings are resolved only for models whose head reads
text (`uses_text`); a model config may define its own `clip_encoder` dict (the tiny demo does),
otherwise `cfg['clip_encoder']` names a config file whose `backbone` dict becomes the frozen
guidance encoder. Weight sources named `'clip'` in model configs become the configured CLIP
ViT-B/16 weights (`semiseg.models.weights.clip_weights_source`).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from semiseg.models.weights import CLIP_SOURCE, clip_weights_source
from semiseg.utils.names import model_stem

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'models'


class UnknownModel(KeyError):
    """A model name without a config file under configs/models/."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def available_models() -> list[str]:
    """Model config names under configs/models/ (use as 'mmseg.<name>')."""
    return sorted(p.stem for p in CONFIG_DIR.glob('*.py'))


def model_config_path(name: str) -> Path:
    """The config file for 'mmseg.<name>' or '<name>'; the error lists what exists.

    A name is an identifier (letters, digits, - and _), never a path: mmengine executes the file,
    so nothing outside configs/models/ may be reached through a run config.
    """
    try:
        stem = model_stem(name)
    except ValueError as err:
        raise UnknownModel(str(err)) from None
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


def deep_update(base: dict, updates: dict) -> dict:
    """Merge `updates` into `base` in place, recursing into dicts present in both."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _resolve_clip_sources(module_cfg: Any, source: str) -> None:
    """Replace every `pretrained='clip'` with the configured CLIP weight source (recursively)."""
    if not isinstance(module_cfg, dict):
        return
    if module_cfg.get('pretrained') == CLIP_SOURCE:
        module_cfg['pretrained'] = source
    for value in module_cfg.values():
        _resolve_clip_sources(value, source)


def _set_img_size(model_cfg: dict, file_cfg: dict, crop: int) -> None:
    """Backbone and head work at the crop size (semivl `model/builder.py`; AllSpark's decoder
    takes `image_size` = the crop, xmed-lab/AllSpark `configs/*_allspark.yaml`)."""
    if 'image_size' in model_cfg.get('decode_head', {}):
        model_cfg['decode_head']['image_size'] = crop
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


def _concept_groups(cfg: dict, rows: int, nclass: int) -> list[list[int]] | None:
    if rows == nclass:
        return None
    given = (cfg.get('model_args') or {}).get('mcc_concept_groups')
    if given is not None:
        return given
    from semiseg.models.text_embeddings import concept_groups
    groups = concept_groups(cfg, 'mcc')
    if groups is None:
        raise ValueError(f'the mcc text embedding has {rows} rows for {nclass} classes and no '
                         'class->concept grouping is known for it; set model_args.mcc_concept_groups '
                         '(list of row-index lists per class)')
    return groups


def _resolve_text(cfg: dict, which: str) -> torch.Tensor:
    from semiseg.models.text_embeddings import resolve_text_embedding
    return resolve_text_embedding(cfg, which)


def _text_inputs(cfg: dict, model_cfg: dict, file_cfg: dict, text_embedding, mcc_text_embedding) -> None:
    """Text embeddings and the guidance encoder of a vision-language segmentor, where used."""
    head_cls = MODELS.get(model_cfg['decode_head']['type'])
    if getattr(head_cls, 'uses_text', False):
        model_cfg['text_embedding'] = text_embedding if text_embedding is not None else _resolve_text(cfg, 'text')
    clip_cfg = _clip_encoder_cfg(cfg, file_cfg)
    if clip_cfg is None:
        return
    if cfg.get('mcc_fix_resize_pos') and 'img_size' in clip_cfg:
        clip_cfg['img_size'] = (cfg['crop_size'], cfg['crop_size'])  # semivl mcc_fix_resize_pos
    model_cfg['clip_encoder'] = clip_cfg
    mcc = torch.as_tensor(mcc_text_embedding if mcc_text_embedding is not None else _resolve_text(cfg, 'mcc'))
    model_cfg['mcc_text_embedding'] = mcc
    model_cfg['mcc_concept_groups'] = _concept_groups(cfg, mcc.shape[0], cfg['nclass'])


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
    if getattr(MODELS.get(model_cfg['type']), 'vision_language', False):
        _text_inputs(cfg, model_cfg, file_cfg, text_embedding, mcc_text_embedding)
    deep_update(model_cfg, cfg.get('model_args') or {})
    model_cfg['disable_dropout'] = bool(cfg['disable_dropout'])
    model_cfg['fp_rate'] = float(cfg['fp_rate'])

    if pretrained:
        _resolve_clip_sources(model_cfg, clip_weights_source(cfg))
    else:
        for key in ('backbone', 'clip_encoder', 'conv_encoder', 'decode_head'):
            _strip_pretrained(model_cfg.get(key))
    model = MODELS.build(model_cfg)
    if pretrained:
        model.init_weights()
    if cfg.get('lock_backbone'):   # UniMatch V2's lock_backbone: the encoder runs but never trains
        model.backbone.requires_grad_(False)
    logger.info('built %s: %.2fM parameters', cfg['model'],
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model
