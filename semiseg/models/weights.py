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

import contextlib
import functools
import logging
import math
import os
import re
import socket
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from semiseg.utils.files import atomic_torch_save
from semiseg.utils.modules import inner_state_dict, strip_prefixes
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
    obj = inner_state_dict(obj, ('state_dict', 'model'))
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f'{path}: no state dict found (got {type(obj).__name__}). {HOW_TO_PROVIDE}')
    return strip_prefixes(obj, ('module.',), tensors_only=True)   # OpenAI archives carry ints (input_resolution)


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


HUB_HOST = ('huggingface.co', 443)   # where open_clip fetches the 'openai' weights from
HUB_TIMEOUT_S = 3.0


def hub_reachable(host: tuple[str, int] = HUB_HOST, timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the model hub answers a TCP connection within `timeout` seconds (no retries)."""
    try:
        socket.create_connection(host, timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode (as HF_HUB_OFFLINE=1): files come from the local cache or fail at once."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _in_local_cache(pretrained: Mapping) -> bool:
    """Whether open_clip finds these pretrained weights without the network (its Hugging Face hub
    cache, or its URL download folder ~/.cache/clip)."""
    hub = pretrained.get('hf_hub') or ''
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            model_id, filename = os.path.split(hub)
            for name in (filename or 'open_clip_pytorch_model.bin', 'open_clip_model.safetensors'):
                if isinstance(try_to_load_from_cache(model_id, name), str):
                    return True
    url = pretrained.get('url') or ''
    return bool(url) and (Path.home() / '.cache' / 'clip' / os.path.basename(url)).is_file()


def openai_clip_model(model_name: str = CLIP_MODEL_NAME) -> nn.Module:
    """open_clip's CLIP with the 'openai' weights: from the local cache when they are there, else
    downloaded when the hub answers; offline, one line at once (open_clip would retry the hub for
    about a minute) saying what is needed, where to get it and the option that points at it."""
    try:
        import open_clip
    except ImportError as err:
        raise WeightsError(f'open_clip is not installed ({err}); {HOW_TO_PROVIDE}') from None
    create = functools.partial(open_clip.create_model, model_name, pretrained='openai',
                               force_quick_gelu=True)   # OpenAI CLIP uses QuickGELU
    if _in_local_cache(open_clip.get_pretrained_cfg(model_name, 'openai')):
        with hub_offline():   # no network round trip for a file we have
            return create()
    if not hub_reachable():
        raise WeightsError(
            f'the CLIP {model_name} weights are not in the local open_clip/Hugging Face cache and '
            f'{HUB_HOST[0]} cannot be reached (offline?): download {OPENAI_URL} where there is internet and '
            f'point --cfg-options clip_weights=PATH (or ${ENV_CLIP}) at the file')
    try:
        return create()
    except Exception as err:  # noqa: BLE001 - any download/cache failure gets one clear message
        raise WeightsError(f'could not obtain the OpenAI {model_name} weights through open_clip '
                           f'({" ".join(str(err).split())[:200]}). {HOW_TO_PROVIDE}') from None


def openai_clip_state_dict(model_name: str = CLIP_MODEL_NAME) -> dict[str, torch.Tensor]:
    """Full OpenAI-format CLIP state dict through open_clip's hub download (needs internet once)."""
    model = openai_clip_model(model_name)
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
