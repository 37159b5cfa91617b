"""VLMSegmentor: CLIP backbone + text-conditioned head, with frozen MaskCLIP guidance.

google-research/semivl `model/vlm.py` (`VLM`) and `model/builder.py` (`build_model`).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from semiseg.models.backbones.maskclip_vit import MaskClipVisionTransformer, freeze_for_spatial_finetuning
from semiseg.models.perturb import apply_shared_channel_mask, complementary_masks, dropout_copies
from semiseg.models.weights import clip_backbone_state_dict
from semiseg.utils.imaging import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from semiseg.utils.labels import IGNORE_INDEX

from .common import SegmentorCommon

logger = logging.getLogger(__name__)

FINETUNE_MODES = ('full', 'attn_pos')


def _renorm_imagenet_to_clip(img: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised -> CLIP-normalised, per channel (step 1 of the release's
    `VLM.extract_feat`, google-research/semivl `model/vlm.py`)."""
    def vec(values):
        return img.new_tensor(values).view(1, -1, 1, 1)
    return (img * vec(IMAGENET_STD) + vec(IMAGENET_MEAN) - vec(CLIP_MEAN)) / vec(CLIP_STD)


def _autocast_off(device: torch.device):
    """A region without autocast on `device` (a no-op context where autocast does not exist)."""
    if device.type in ('cpu', 'cuda', 'xpu', 'mps'):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _as_text(t: torch.Tensor | None, name: str) -> torch.Tensor | None:
    if t is None:
        return None
    t = torch.as_tensor(t)
    if t.dim() != 2:
        raise ValueError(f'{name} must be a (classes, dims) matrix, got shape {tuple(t.shape)}')
    return t.detach().float()


@MODELS.register_module()
class VLMSegmentor(SegmentorCommon, EncoderDecoder):
    """Vision-language segmentor.

    `model(images)` -> logits (B, N, H, W) at the input size; `model(images, need_fp=True)`
    -> (logits, logits_fp) with UniMatch feature perturbation. `guidance_labels(images, t)`
    gives MaskCLIP pseudo-labels from the frozen `clip_encoder` (255 below `t`).

    Text embeddings are non-persistent buffers, so the state dict holds exactly the release's
    keys (backbone, decode_head, clip_encoder, conv_encoder, in that order). Heads that do not read
    text (`uses_text = False`, the DeepLabv3+ ablations) need none.
    """

    vision_language = True   # the builder gives it text embeddings and a guidance encoder
    eval_batch_independent = True   # per-image eval outputs: predict may batch sliding windows

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 clip_encoder: dict | None = None,
                 conv_encoder: dict | None = None,
                 text_embedding: torch.Tensor | None = None,
                 mcc_text_embedding: torch.Tensor | None = None,
                 mcc_concept_groups: Sequence[Sequence[int]] | None = None,
                 finetune: str = 'full',
                 renorm_clip_img: bool = False,
                 disable_dropout: bool = False,
                 fp_rate: float = 0.5,
                 comp_drop_keep_ratio: float = 0.5,
                 maskclip_class_filter=None,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None,
                 **unused) -> None:
        if unused:
            raise TypeError(f'VLMSegmentor got unknown arguments {sorted(unused)}')
        if finetune not in FINETUNE_MODES:
            raise ValueError(f'finetune={finetune!r}; choose one of {FINETUNE_MODES}')
        if maskclip_class_filter is not None:
            raise ValueError('maskclip_class_filter is asserted None in the SemiVL release')
        super().__init__(backbone=backbone, decode_head=decode_head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.clip_encoder = MODELS.build(clip_encoder) if clip_encoder else None
        self.conv_encoder = MODELS.build(conv_encoder) if conv_encoder else None
        if self.clip_encoder is not None:
            self.clip_encoder.requires_grad_(False)
            self.clip_encoder.eval()
        self.finetune = finetune
        if finetune == 'attn_pos':
            n = freeze_for_spatial_finetuning(self.backbone)
            logger.info('Spatial fine-tuning: %d trainable backbone parameters', n)
        self.renorm_clip_img = renorm_clip_img
        self.disable_dropout = disable_dropout
        self.fp_rate = fp_rate
        self.comp_drop_keep_ratio = comp_drop_keep_ratio
        self.register_buffer('text_embedding', _as_text(text_embedding, 'text_embedding'),
                             persistent=False)
        self.register_buffer('mcc_text_embedding',
                             _as_text(mcc_text_embedding, 'mcc_text_embedding'), persistent=False)
        self.mcc_concept_groups = [list(g) for g in mcc_concept_groups] \
            if mcc_concept_groups is not None else None
        self._check_text()

    # -- construction helpers -------------------------------------------------------------
    def _check_text(self) -> None:
        t = self.text_embedding
        if t is not None and t.shape[0] != self.num_classes:
            raise ValueError(f'text_embedding has {t.shape[0]} rows but the head predicts '
                             f'{self.num_classes} classes')
        m = self.mcc_text_embedding
        if m is None or self.mcc_concept_groups is None:
            if m is not None and m.shape[0] != self.num_classes:
                raise ValueError(f'mcc_text_embedding has {m.shape[0]} rows for '
                                 f'{self.num_classes} classes: pass mcc_concept_groups '
                                 '(class -> concept row indices)')
            return
        groups = self.mcc_concept_groups
        if len(groups) != self.num_classes:
            raise ValueError(f'mcc_concept_groups has {len(groups)} groups for '
                             f'{self.num_classes} classes')
        rows = [i for g in groups for i in g]
        if not rows or min(rows) < 0 or max(rows) >= m.shape[0] or any(not g for g in groups):
            raise ValueError(f'mcc_concept_groups must index rows 0..{m.shape[0] - 1} of the mcc '
                             'text embedding, with at least one row per class')

    @property
    def has_guidance(self) -> bool:
        return self.clip_encoder is not None and self.mcc_text_embedding is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.clip_encoder is not None:
            self.clip_encoder.eval()  # the guidance encoder never trains
        return self

    def init_weights(self) -> None:
        """Load pretrained CLIP weights into the CLIP encoders; the head keeps torch init. The
        backbone and the guidance encoder usually name the same CLIP source: it is read once."""
        read: dict = {}
        for module in (self.backbone, self.clip_encoder, self.conv_encoder):
            if module is None or not hasattr(module, 'init_weights'):
                continue
            source = getattr(module, 'pretrained', None)
            if isinstance(module, MaskClipVisionTransformer) and source:
                if source not in read:
                    read[source] = clip_backbone_state_dict(source)
                module.init_weights(read[source])
            else:
                module.init_weights()

    # -- forward ----------------------------------------------------------------------------
    def _clip_input(self, img: torch.Tensor) -> torch.Tensor:
        return _renorm_imagenet_to_clip(img) if self.renorm_clip_img else img

    def extract_feat(self, inputs: torch.Tensor) -> list:
        """[backbone_out, text, conv_feats or None] (google-research/semivl `model/vlm.py`,
        `VLM.extract_feat`)."""
        if self.text_embedding is None and getattr(self.decode_head, 'uses_text', True):
            raise RuntimeError('VLMSegmentor has no text embedding; build it with '
                               'text_embedding=<(N, 512) tensor>')
        feats = self.backbone(self._clip_input(inputs))
        conv = self.conv_encoder(inputs) if self.conv_encoder is not None else None
        if conv is not None:
            conv = tuple(conv) if isinstance(conv, (list, tuple)) else (conv,)
        return [feats, self.text_embedding, conv]

    def _switch_off_dropout(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Dropout) or getattr(m, 'disabled_by_disable_dropout', False):
                m.eval()

    def _perturb(self, x: list) -> list:
        """UniMatch FP: append a dropout2d copy of every feature (global embedding duplicated)."""
        (feats, glob), text, conv = x
        feats = tuple(dropout_copies(feats, self.fp_rate))
        glob = torch.cat([glob, glob]) if glob is not None else None
        conv = tuple(dropout_copies(conv, self.fp_rate)) if conv is not None else None
        return [[feats, glob], text, conv]

    def _head_logits(self, x: list) -> torch.Tensor:
        out = self.decode_head(x, force_output_pred_masks=True)
        if isinstance(out, dict):
            out = out['pred_masks']
        return out

    def _complementary_dropout(self, x: list) -> list:
        """UniMatch V2's complementary channel dropout on every feature map of cat(s1, s2) (our
        combination, experiment 65): one mask for all maps, as `DPT.forward` multiplies one mask
        onto its four levels; drawn for the widest map, narrower maps (a conv encoder's) take its
        first channels. The global embedding stays as it is."""
        (feats, glob), text, conv = x
        maps = list(feats) + list(conv or ())
        pairs = maps[0].shape[0] // 2
        mask = complementary_masks(pairs, max(f.shape[1] for f in maps), self.comp_drop_keep_ratio)
        maps = apply_shared_channel_mask(maps, mask)
        feats, conv = tuple(maps[:len(feats)]), (tuple(maps[len(feats):]) if conv is not None else None)
        return [[feats, glob], text, conv]

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor',
                need_fp: bool = False, comp_drop: bool = False):
        self._check_forward(mode, need_fp, comp_drop)
        x = self.extract_feat(inputs)
        if self.disable_dropout and self.training:
            self._switch_off_dropout()
        if need_fp:
            x = self._perturb(x)
        elif comp_drop:
            x = self._complementary_dropout(x)
        return self._at_input_size(self._head_logits(x), inputs, need_fp)

    # -- MaskCLIP guidance ------------------------------------------------------------------
    @torch.no_grad()
    def guidance_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Raw class cosines (B, N, h, w) of the frozen encoder (concept max per class)."""
        if not self.has_guidance:
            raise RuntimeError('this model has no MaskCLIP guidance: build it with a '
                               'clip_encoder and an mcc_text_embedding')
        emb = self.clip_encoder(self._clip_input(images))[0][0]
        with _autocast_off(emb.device):   # fp32 even under bf16 autocast: the cosines decide labels
            cos = F.conv2d(emb.float(), self.mcc_text_embedding.float()[:, :, None, None])
        if self.mcc_concept_groups is not None:
            cos = torch.stack([cos[:, g].amax(dim=1) for g in self.mcc_concept_groups], dim=1)
        elif cos.shape[1] != self.num_classes:
            raise RuntimeError(f'mcc text has {cos.shape[1]} rows for {self.num_classes} classes '
                               'and no mcc_concept_groups')
        return cos

    @torch.no_grad()
    def guidance_labels(self, images: torch.Tensor, conf_thresh: float) -> torch.Tensor:
        """MaskCLIP pseudo-labels (B, H, W) int64; 255 where softmax(100 cos) max < conf_thresh."""
        cos = self.guidance_logits(images)  # the encoder is kept in eval mode by train()
        with _autocast_off(cos.device):     # fp32 cosines (guidance_logits), fp32 softmax
            cos = F.interpolate(cos, size=images.shape[-2:], mode='bilinear', align_corners=False)
            conf, label = (100.0 * cos).softmax(dim=1).max(dim=1)
        return label.masked_fill_(conf < conf_thresh, IGNORE_INDEX)   # no host sync, unlike a bool index
