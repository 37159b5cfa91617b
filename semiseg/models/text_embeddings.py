"""CLIP ViT-B/16 text embeddings of class names and class definitions (google-research/semivl
``model/text_embeddings.py``, ``prepare_text_embedding``).

Files are ``{prefix}_{variant}.npy``: float16, L2-normalised rows, prompt ``"a photo of a {c}"``
(the release's prompt, without a final period). Variants:

- ``single``: one row per class name;
- ``concept{k}_single``: one row per concept, grouped contiguously per class
  (groups from :mod:`semiseg.data.class_definitions`);
- ``conceptavg{k}_single``: per class, the mean of its raw (unnormalised) concept embeddings,
  renormalised.

:func:`resolve_text_embedding` finds a file (explicit path, ``{data_root}/text_embedding/``,
``$SEMISEG_TEXT_EMBEDDINGS``, ``~/.cache/semiseg/text_embedding/``) or computes and caches it
with open_clip. CLIP weights for computing: ``$SEMISEG_CLIP_WEIGHTS`` (a local checkpoint) or
the open_clip hub download ``'openai'``.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semiseg.data.datasets import DATASETS, dataset_info
from semiseg.data.errors import DataError
from semiseg.models import weights as W
from semiseg.utils.files import atomic_write

logger = logging.getLogger(__name__)

PROMPT = 'a photo of a {}'
CFG_KEY = {'text': 'text_embedding_variant', 'mcc': 'mcc_text', 'pl': 'pl_text'}
ENV_DIR = 'SEMISEG_TEXT_EMBEDDINGS'
_VARIANT_RE = re.compile(r'^(single|concept(\d+)_single|conceptavg(\d+)_single)$')


class TextEmbeddingError(ValueError):
    """A text embedding cannot be found, computed or does not fit the dataset."""


@dataclass(frozen=True)
class Variant:
    """Parsed variant name: kind is 'single', 'concept' or 'conceptavg'; k the definition set."""
    name: str
    kind: str
    k: int | None


def parse_variant(name: str) -> Variant:
    m = _VARIANT_RE.match(name)
    if m is None:
        raise TextEmbeddingError(
            f'unknown text embedding variant {name!r}; use single, concept<k>_single, '
            f'conceptavg<k>_single or a path to a .npy file')
    if m.group(2):
        return Variant(name, 'concept', int(m.group(2)))
    if m.group(3):
        return Variant(name, 'conceptavg', int(m.group(3)))
    return Variant(name, 'single', None)


def text_prefix(dataset: str) -> str:
    """File prefix of a dataset (pascal -> voc12_wbg; custom datasets use their own name)."""
    return DATASETS[dataset].text_prefix if dataset in DATASETS else dataset


def embedding_filename(dataset: str, variant: str) -> str:
    parse_variant(variant)
    return f'{text_prefix(dataset)}_{variant}.npy'


def class_names(dataset: str, data_root: str | os.PathLike | None = None) -> list[str]:
    """Prompt names of a dataset: the registry's, else ``{data_root}/classes.txt``."""
    try:
        return list(dataset_info(dataset, data_root).prompts)
    except DataError as err:
        raise TextEmbeddingError(f'no class names for dataset {dataset!r}: {err} (or pass a text '
                                 'embedding .npy file)') from None


def class_concepts(dataset: str, k: int) -> list[list[str]]:
    """Nested concept lists (one list per class) of definition set ``k``."""
    concepts = DATASETS[dataset].concepts if dataset in DATASETS else {}
    if k not in concepts:
        known = {d: sorted(i.concepts) for d, i in DATASETS.items() if i.concepts}
        raise TextEmbeddingError(
            f'no class definitions concept{k} for dataset {dataset!r} (known: {known}); add them '
            f'to semiseg/data/class_definitions.py and the dataset registry')
    return [list(c) for c in concepts[k]]


def groups_from_concepts(nested: Sequence[Sequence[str]]) -> list[list[int]]:
    """Row indices of each class in the flattened concept list."""
    groups, start = [], 0
    for concepts in nested:
        groups.append(list(range(start, start + len(concepts))))
        start += len(concepts)
    return groups


def prompt_rows(dataset: str, variant: str, data_root: str | None = None) -> list[str]:
    """The names whose embeddings make the rows (single) or the raw concepts (concept*)."""
    v = parse_variant(variant)
    if v.kind == 'single':
        return class_names(dataset, data_root)
    return [c for concepts in class_concepts(dataset, v.k) for c in concepts]


# --------------------------------------------------------------------------- encoding

def load_clip_text_model(source: str | os.PathLike = 'openai') -> torch.nn.Module:
    """An open_clip CLIP model in eval mode, fp32, from ``'openai'`` or a checkpoint path.

    Architecture is inferred from the OpenAI-format state dict, so any CLIP size works.
    """
    from open_clip.model import build_model_from_openai_state_dict

    if str(source) == 'openai':
        try:
            model = W.openai_clip_model(W.CLIP_MODEL_NAME)
        except W.WeightsError as err:   # offline or no open_clip: one line, said once
            raise TextEmbeddingError(f'the text embedding cannot be computed: {err}') from None
        return model.float().eval()
    sd = W.read_checkpoint_state_dict(source)
    if 'token_embedding.weight' not in sd:
        raise TextEmbeddingError(f'{source} has no CLIP text tower (token_embedding.weight); '
                                 'give a full OpenAI/open_clip CLIP checkpoint')
    model = build_model_from_openai_state_dict(dict(sd), cast_dtype=None)
    return model.float().eval()


@torch.no_grad()
def encode_texts(model: torch.nn.Module, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Raw (unnormalised) fp32 text features for ``PROMPT.format(t)`` of every text."""
    import open_clip

    device = next(model.parameters()).device
    context_length = getattr(model, 'context_length', 77)
    feats = []
    for i in range(0, len(texts), batch_size):
        tokens = open_clip.tokenize([PROMPT.format(t) for t in texts[i:i + batch_size]],
                                    context_length=context_length)
        feats.append(model.encode_text(tokens.to(device)).float().cpu())
    return torch.cat(feats)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def compute_text_embedding(dataset: str, variant: str, model: torch.nn.Module,
                           data_root: str | None = None) -> np.ndarray:
    """Compute a variant's embedding as float16 (rows L2-normalised before the cast)."""
    v = parse_variant(variant)
    raw = encode_texts(model, prompt_rows(dataset, variant, data_root))
    if v.kind == 'conceptavg':
        groups = groups_from_concepts(class_concepts(dataset, v.k))
        raw = torch.stack([raw[g].mean(dim=0) for g in groups])
    return _normalise(raw).numpy().astype(np.float16)


def save_embedding(array: np.ndarray, path: str | os.PathLike) -> Path:
    return atomic_write(os.path.expanduser(str(path)), lambda f: np.save(f, array.astype(np.float16)))


# --------------------------------------------------------------------------- resolution

def cache_dir() -> Path:
    return Path(os.path.expanduser('~/.cache/semiseg/text_embedding'))


def _variant_value(cfg: Mapping, which: str) -> str:
    if which not in CFG_KEY:
        raise TextEmbeddingError(f"which must be one of {sorted(CFG_KEY)}, got {which!r}")
    value = cfg.get(CFG_KEY[which], 'same' if which != 'text' else 'single')
    if value in (None, 'same'):
        value = cfg.get('text_embedding_variant') or 'single'
    return str(value)


def candidate_paths(cfg: Mapping, which: str = 'text') -> list[Path]:
    """Where :func:`resolve_text_embedding` looks, in order."""
    value = _variant_value(cfg, which)
    if value.endswith('.npy'):
        return [Path(os.path.expanduser(value))]
    name = embedding_filename(cfg['dataset'], value)
    dirs = []
    if cfg.get('data_root'):
        dirs.append(Path(os.path.expanduser(str(cfg['data_root']))) / 'text_embedding')
    if os.environ.get(ENV_DIR):
        dirs.append(Path(os.path.expanduser(os.environ[ENV_DIR])))
    dirs.append(cache_dir())
    return [d / name for d in dirs]


def _missing_help(reason: str, name: str = '<prefix>_<variant>.npy') -> str:
    return (f'text embedding {name} is not available and cannot be computed ({reason}). '
            f'Either copy the SemiVL release file configs/_base_/datasets/text_embedding/{name} '
            f'into {{data_root}}/text_embedding/, ${ENV_DIR} or {cache_dir()}, or compute it with '
            f'`python -m semiseg.tools.text_embeddings --dataset <dataset> --variant <variant> '
            f'--clip /path/to/ViT-B-16.pt` (or set ${W.ENV_CLIP} to a CLIP checkpoint).')


def _expected_rows(cfg: Mapping, variant: str) -> int | None:
    v = parse_variant(variant)
    if v.kind == 'concept':
        return sum(len(c) for c in class_concepts(cfg['dataset'], v.k))
    return cfg.get('nclass')


def _check(array: np.ndarray, path: Path, cfg: Mapping, value: str) -> None:
    if array.ndim != 2:
        raise TextEmbeddingError(f'{path}: expected a 2-D (rows, dim) array, got {array.shape}')
    if value.endswith('.npy'):
        return
    expected = _expected_rows(cfg, value)
    if expected is not None and array.shape[0] != expected:
        raise TextEmbeddingError(
            f'{path} has {array.shape[0]} rows but variant {value!r} of dataset '
            f'{cfg["dataset"]!r} needs {expected}; delete the file to recompute it')


def load_or_compute(cfg: Mapping, which: str = 'text', clip_source: str | None = None) -> np.ndarray:
    """The fp16 array of a config's text variant (searching, else computing and caching)."""
    value = _variant_value(cfg, which)
    paths = candidate_paths(cfg, which)
    for path in paths:
        if path.is_file():
            array = np.load(path)
            _check(array, path, cfg, value)
            return array.astype(np.float16)
    if value.endswith('.npy'):
        raise TextEmbeddingError(f'text embedding file not found: {paths[0]}')
    source = clip_source or W.clip_weights_source(cfg)
    name = embedding_filename(cfg['dataset'], value)
    logger.info('text embedding %s not found in %s; computing it with CLIP (%s)',
                name, [str(p.parent) for p in paths], source)
    try:
        model = load_clip_text_model(source)
    except (TextEmbeddingError, W.WeightsError) as err:
        raise TextEmbeddingError(_missing_help(str(err), name)) from err
    array = compute_text_embedding(cfg['dataset'], value, model, cfg.get('data_root'))
    _check(array, paths[-1], cfg, value)
    out = save_embedding(array, paths[-1])
    logger.info('cached text embedding %s', out)
    return array


def resolve_text_embedding(cfg: Mapping, which: str = 'text') -> torch.Tensor:
    """Float32 tensor (rows, 512) holding the fp16-rounded values of the requested embedding.

    ``which``: 'text' (text_embedding_variant), 'mcc' (mcc_text), 'pl' (pl_text); 'same'
    means the text variant.
    """
    return torch.from_numpy(load_or_compute(cfg, which)).float()


def concept_groups(cfg: Mapping, which: str = 'mcc') -> list[list[int]] | None:
    """Class -> row-index groups for concept variants, None for one-row-per-class variants."""
    value = _variant_value(cfg, which)
    if value.endswith('.npy'):
        stem = Path(value).stem
        prefix = text_prefix(cfg['dataset']) + '_'
        value = stem[len(prefix):] if stem.startswith(prefix) else stem
        if not _VARIANT_RE.match(value):
            return None
    v = parse_variant(value)
    if v.kind != 'concept':
        return None
    return groups_from_concepts(class_concepts(cfg['dataset'], v.k))
