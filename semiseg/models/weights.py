"""CLIP ViT-B/16 weights: read OpenAI / open_clip checkpoints, convert the visual tower to the
MaskCLIP backbone layout (google-research/semivl `third_party/maskclip/convert_clip_weights.py`)
and load them into a backbone (as `MaskClipVisionTransformer.init_weights` does, same repository,
`third_party/maskclip/models/backbones/maskclip_vit.py`).

Accepted sources everywhere (``source`` arguments):

- ``'openai'``: the OpenAI ViT-B/16 weights fetched by open_clip (needs internet or a filled
  open_clip/Hugging Face cache);
- a path to an OpenAI checkpoint (TorchScript archive ``ViT-B-16.pt`` or a plain state dict) or to
  an open_clip checkpoint (same key names as OpenAI, possibly wrapped in ``{'state_dict': ...}``
  and/or prefixed with ``module.``);
- a path to an already converted backbone checkpoint ``{'meta': {}, 'state_dict': ...}`` as written
  by ``python -m semiseg.tools.convert_clip``.
"""
from __future__ import annotations

import logging
import math
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from semiseg.utils.files import atomic_torch_save
from semiseg.utils.pos_embed import resize_pos_embed

logger = logging.getLogger(__name__)

CLIP_MODEL_NAME = 'ViT-B-16'
CLIP_SOURCE = 'clip'                      # model configs: "the configured CLIP ViT-B/16 weights"
ENV_CLIP = 'SEMISEG_CLIP_WEIGHTS'         # a local CLIP checkpoint for every run and tool
RELEASE_CLIP_PATH = 'pretrained/ViT-B-16.pt'   # where the SemiVL release expects the file
OPENAI_URL = ('https://openaipublic.azureedge.net/clip/models/'
              '5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt')
HOW_TO_PROVIDE = (
    'Either allow the open_clip download (internet on first use, then cached), or point '
    f'--cfg-options clip_weights=PATH or ${ENV_CLIP} at a local file: the OpenAI checkpoint ViT-B-16.pt '
    f'({OPENAI_URL}), an open_clip ViT-B-16 (openai) checkpoint, or a file written by '
    '`python -m semiseg.tools.convert_clip`.')


def clip_weights_source(cfg: Mapping | None = None) -> str:
    """Where CLIP ViT-B/16 weights come from: the run's `clip_weights` option, else
    `$SEMISEG_CLIP_WEIGHTS`, else the release's `pretrained/ViT-B-16.pt` when it exists, else
    `'openai'` (open_clip's hub download, cached)."""
    explicit = (cfg or {}).get('clip_weights') or os.environ.get(ENV_CLIP)
    if explicit:
        return str(explicit)
    if Path(RELEASE_CLIP_PATH).is_file():
        return RELEASE_CLIP_PATH
    return 'openai'


class WeightsError(ValueError):
    """A weight file is missing, unreadable or does not fit the model."""


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a loaded checkpoint object."""
    if isinstance(obj, torch.jit.ScriptModule):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ('state_dict', 'model'):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f'{path}: no state dict found (got {type(obj).__name__}). {HOW_TO_PROVIDE}')
    out = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue  # OpenAI archives carry ints such as input_resolution
        out[k[len('module.'):] if k.startswith('module.') else k] = v
    return out


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split('/', 1)[-1].startswith('code/') for n in zf.namelist())


def read_checkpoint_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read any supported checkpoint file (TorchScript archive or pickled dict) to CPU tensors."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise WeightsError(f'CLIP weight file not found: {path}. {HOW_TO_PROVIDE}')
    if _is_torchscript(path):  # OpenAI's ViT-B-16.pt is a TorchScript archive
        return _unwrap(torch.jit.load(path, map_location='cpu'), path)
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as load_error:  # noqa: BLE001 - fall back to TorchScript, report both
        try:
            obj = torch.jit.load(path, map_location='cpu')
        except Exception as jit_error:  # noqa: BLE001
            raise WeightsError(
                f'cannot read {path} as a state dict ({load_error}) nor as a TorchScript archive '
                f'({jit_error}). {HOW_TO_PROVIDE}') from jit_error
    return _unwrap(obj, path)


def openai_clip_state_dict(model_name: str = CLIP_MODEL_NAME) -> dict[str, torch.Tensor]:
    """Full OpenAI-format CLIP state dict through open_clip's hub download (needs internet once)."""
    try:
        import open_clip
        model = open_clip.create_model(model_name, pretrained='openai',
                                       force_quick_gelu=True)  # OpenAI CLIP uses QuickGELU
    except Exception as err:  # noqa: BLE001 - any import/download/cache failure gets one clear message
        raise WeightsError(
            f'could not obtain the OpenAI {model_name} weights through open_clip ({err}). '
            f'{HOW_TO_PROVIDE}') from err
    return {k: v.detach().float() for k, v in model.state_dict().items()}


def clip_state_dict(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """OpenAI-format CLIP (or converted backbone) state dict for ``'openai'`` or a file path."""
    if str(source) == 'openai':
        return openai_clip_state_dict()
    return read_checkpoint_state_dict(source)


# --------------------------------------------------------------------------- conversion
# (the release's third_party/maskclip/convert_clip_weights.py)

def is_converted(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a backbone-layout dict (``backbone.*`` / ``cls_token``), False for CLIP layout."""
    return any(k.startswith('backbone.') or k in ('cls_token', 'pos_embed') for k in state_dict)


def _convert_block_key(rest: str) -> str:
    rest = rest.replace('mlp', 'ffn.layers').replace('c_fc', '0.0').replace('c_proj', '1')
    if 'attn' in rest:
        return rest.replace('attn', 'attn.attn')
    return rest.replace('ln_', 'ln')


def convert_clip_visual(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert the visual tower of an OpenAI/open_clip CLIP state dict to the MaskCLIP backbone.

    Output keys carry the ``backbone.`` prefix, except ``proj.weight`` (transposed to out×in),
    values are float32; this is the release's ``clip2mmseg_ViT16_clip_backbone.pth`` content.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if 'visual' not in key:
            continue
        k = key.replace('visual.', '', 1) if key.startswith('visual.') else key
        value = value.detach().float()
        if k == 'proj':
            out['proj.weight'] = value.t().contiguous()
            continue
        if k == 'class_embedding':
            k, value = 'cls_token', value.reshape(1, 1, -1)
        elif k == 'positional_embedding':
            k, value = 'pos_embed', value.unsqueeze(0)
        elif k == 'conv1.weight':
            k = 'patch_embed.projection.weight'
        elif k.startswith('ln_pre.'):
            k = 'ln0.' + k[len('ln_pre.'):]
        elif k.startswith('ln_post.'):
            k = 'ln1.' + k[len('ln_post.'):]
        else:
            m = re.match(r'transformer\.resblocks\.(\d+)\.(.+)$', k)
            if m is None:
                logger.warning('convert_clip_visual: skipping unknown visual key %s', key)
                continue
            k = f'layers.{m.group(1)}.' + _convert_block_key(m.group(2))
        out['backbone.' + k] = value
    if not out:
        raise WeightsError('no visual.* keys in the CLIP state dict: is this a CLIP checkpoint? '
                           + HOW_TO_PROVIDE)
    return out


def clip_backbone_state_dict(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Converted backbone dict (``backbone.*`` + ``proj.weight``) from any supported source."""
    sd = clip_state_dict(source)
    return dict(sd) if is_converted(sd) else convert_clip_visual(sd)


def save_converted(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write ``{'meta': {}, 'state_dict': ...}`` (the release's converted-checkpoint format)."""
    return atomic_torch_save({'meta': {}, 'state_dict': dict(state_dict)}, os.path.expanduser(str(path)))


# --------------------------------------------------------------------------- loading
# (the release's MaskClipVisionTransformer.init_weights, and its runtime pos-embed resize)

def _as_pair(x: object) -> tuple[int, int] | None:
    if isinstance(x, int):
        return (x, x)
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(v, int) for v in x):
        return (int(x[0]), int(x[1]))
    return None


def target_grid(module: nn.Module, n_tokens: int) -> tuple[int, int]:
    """Patch grid of a backbone: from img_size/patch_size when they agree, else square."""
    img, patch = _as_pair(getattr(module, 'img_size', None)), _as_pair(getattr(module, 'patch_size', None))
    if img and patch and (img[0] // patch[0]) * (img[1] // patch[1]) == n_tokens:
        return (img[0] // patch[0], img[1] // patch[1])
    side = int(round(math.sqrt(n_tokens)))
    if side * side != n_tokens:
        raise WeightsError(f'cannot infer the patch grid of {type(module).__name__} '
                           f'({n_tokens} position rows); give it img_size and patch_size attributes')
    return (side, side)


def adapt_backbone_state_dict(state_dict: Mapping[str, torch.Tensor],
                              module: nn.Module) -> dict[str, torch.Tensor]:
    """Apply the release's loading rules (`MaskClipVisionTransformer.init_weights`) to a converted
    dict for ``module`` (see load_*)."""
    own = module.state_dict()
    sd = {k.replace('backbone.', ''): v for k, v in state_dict.items()}
    if 'pos_embed' in sd and 'pos_embed' in own and sd['pos_embed'].shape != own['pos_embed'].shape:
        dst = target_grid(module, own['pos_embed'].shape[1] - 1)
        src = target_grid(None, sd['pos_embed'].shape[1] - 1)
        logger.info('resizing pos_embed %s -> grid %s (bicubic)', tuple(sd['pos_embed'].shape), dst)
        sd['pos_embed'] = resize_pos_embed(sd['pos_embed'], src, dst)
    if 'proj.weight' in sd and 'proj.weight' in own and sd['proj.weight'].dim() == 2 \
            and own['proj.weight'].dim() == 4:
        sd['proj.weight'] = sd['proj.weight'][:, :, None, None]
    bad = [f'{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise WeightsError('CLIP weights do not fit the backbone (is it a ViT-B/16 config?): '
                           + '; '.join(bad[:8]))
    return sd


def load_clip_backbone_weights(module: nn.Module, source: str | os.PathLike,
                               state_dict: Mapping[str, torch.Tensor] | None = None
                               ) -> tuple[list[str], list[str]]:
    """Load CLIP visual weights into a MaskCLIP backbone (non-strict, result logged);
    `state_dict`: `clip_backbone_state_dict(source)` when the caller has already read it.

    Returns (missing_keys, unexpected_keys). Raises WeightsError if no key matched at all
    (wrong file or wrong module), or if a matched tensor has an incompatible shape.
    """
    sd = adapt_backbone_state_dict(clip_backbone_state_dict(source) if state_dict is None else state_dict, module)
    own = module.state_dict()
    matched = [k for k in sd if k in own]
    if not matched:
        raise WeightsError(
            f'none of the {len(sd)} weights in {source} matches {type(module).__name__} '
            f'(file keys e.g. {sorted(sd)[:3]}, model keys e.g. {sorted(own)[:3]}). {HOW_TO_PROVIDE}')
    result = module.load_state_dict(sd, strict=False)
    logger.info('loaded CLIP weights from %s into %s: %d tensors, missing %s, unexpected %s',
                source, type(module).__name__, len(matched), result.missing_keys,
                result.unexpected_keys)
    return list(result.missing_keys), list(result.unexpected_keys)
