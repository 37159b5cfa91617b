"""AllSpark decoder: channel-wise cross-attention with a semantic memory on c4, then SegFormer's head.

xmed-lab/AllSpark `model/semseg/allspark.py` (`SemiDecoder`, its `AllSpark` module with
`CrossAttnMem`, and the SegFormer head it defines): c4 -> map_in (1x1 conv + GELU) -> tokens
`en`; `a = attn(attn_norm(en))`; `z = encoder_norm(a + en)`; map_out (1x1 conv + GELU) replaces c4
in the SegFormer head (per-level Linear projections, fuse conv + BN + ReLU, Dropout2d, classifier).
State-dict names equal the release's under `decode_head.` (`decode_head.allspark.*`,
`decode_head.decoder.*`).

Train mode (batch = cat(labeled, unlabeled), equal halves):
- unlabeled half: channel self-attention (per head a C x C affinity over tokens);
- labeled half: channel cross-attention whose keys/values come from the unlabeled tokens (warm-up)
  or from the semantic memory (after warm-up); all key sources form one bank;
- the memory (`kv_queue` (K, C, N): C slots of N-token channel maps per class; `queue_ptr` (K,))
  is updated in every train forward, before it is read: each unlabeled channel goes to the class
  whose (resized) pseudo map it is most cosine-similar to, and is written FIFO into that class.
Eval mode: each image's labeled branch with keys from the image itself (or, with the release
switch, from the whole batch); the memory is neither read nor written; any input size works. The
release also computes the unlabeled branch at eval and discards it; we skip it (same output).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from semiseg.models.backbones.mit import mit_output_size

logger = logging.getLogger(__name__)

LN_EPS = 1e-6


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _affinity_softmax(scores: torch.Tensor, dropout: nn.Dropout) -> torch.Tensor:
    """Instance-normalise each (H, W) map of a (B, G, H, W) affinity (no affine; it replaces the
    1/sqrt(d) scaling), softmax over the last axis, dropout."""
    return dropout(F.instance_norm(scores).softmax(dim=-1))


class ChannelCrossAttentionMemory(nn.Module):
    """The release's `CrossAttnMem`: channel attention of both branches plus the semantic memory.

    `forward(x, hw)`: x (B, N, C) normalised tokens on an h x w grid. See the module docstring for
    the train/eval behaviour; state (`pseudo_prob_map`, `memory_in_use`) is set by `AllSparkHead`.
    """

    def __init__(self, dim: int, num_heads: int, num_classes: int, num_tokens: int,
                 memory_grid: tuple[int, int] | None, dropout: float,
                 release_eval_batch_keys: bool, release_per_rank_memory: bool) -> None:
        super().__init__()
        self.dim, self.num_heads, self.num_classes = dim, num_heads, num_classes
        self.num_tokens = num_tokens
        # (h, w) the pseudo map is resized to; None: the release's square sqrt(N) grid
        self.memory_grid = memory_grid
        self.release_eval_batch_keys = release_eval_batch_keys
        self.release_per_rank_memory = release_per_rank_memory
        # how ranks agree on the memory under DDP: 'all_gather' (the fix), 'rank0_broadcast' (what
        # the release's DDP does to it), 'none' (the memory is process-local: a head that a
        # DDP(broadcast_buffers=True) wrapper synchronises, as the release's)
        self.memory_sync = 'rank0_broadcast' if release_per_rank_memory else 'all_gather'
        hidden = dim * num_heads
        for name in ('q_u', 'k_u', 'v_u', 'q_l2u', 'k_l2u', 'v_l2u'):
            setattr(self, name, nn.Linear(dim, hidden, bias=False))
        self.out_u = nn.Linear(hidden, dim, bias=False)
        self.out_l2u = nn.Linear(hidden, dim, bias=False)
        self.attn_dropout = nn.Dropout(dropout)
        self.proj_dropout = nn.Dropout(dropout)
        self.register_buffer('kv_queue', torch.randn(num_classes, dim, num_tokens))
        self.register_buffer('queue_ptr', torch.zeros(num_classes, dtype=torch.long))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
        self.pseudo_prob_map: torch.Tensor | None = None
        self.memory_in_use = False
        self.last_channel_classes: torch.Tensor | None = None  # (B_u, C) of the last train forward
        self.last_written_index: torch.Tensor | None = None    # (M, 2) (class, slot) rows written

    # ------------------------------------------------------------------ attention branches
    def _self_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Unlabeled branch: per head a C x C channel affinity; heads flattened channel-major."""
        b, n, c = x.shape
        h = self.num_heads
        q = self.q_u(x).view(b, n, h, c).permute(0, 2, 3, 1)  # (B, h, C, N)
        k = self.k_u(x).view(b, n, h, c).transpose(1, 2)      # (B, h, N, C)
        v = self.v_u(x).view(b, n, h, c).permute(0, 2, 3, 1)  # (B, h, C, N)
        probs = _affinity_softmax(q @ k, self.attn_dropout)   # (B, h, C, C)
        ctx = (probs @ v).permute(0, 3, 2, 1).reshape(b, n, c * h)  # (channel, head) interleaved
        return self.proj_dropout(self.out_u(ctx))

    def _cross_attention(self, x_l: torch.Tensor, source: torch.Tensor, shared_bank: bool) -> torch.Tensor:
        """Labeled branch. `source` (M, N, C): key/value items. `shared_bank`: the hC channels of
        all M items form one bank every query attends to (the release); else query b attends to
        item b only (M == B)."""
        b, n, _ = x_l.shape
        q = self.q_l2u(x_l).transpose(1, 2)                   # (B, hC, N)
        k = self.k_l2u(source)                                # (M, N, hC)
        v = self.v_l2u(source)
        if shared_bank:
            k = k.transpose(0, 1).reshape(1, n, -1)           # (1, N, M*hC)
            v = v.transpose(0, 1).reshape(1, n, -1)
        probs = _affinity_softmax((q @ k).unsqueeze(1), self.attn_dropout)  # (B, 1, hC, M*hC)
        ctx = (probs @ v.transpose(1, 2).unsqueeze(1)).squeeze(1)          # (B, hC, N)
        return self.proj_dropout(self.out_l2u(ctx.transpose(1, 2)))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if not self.training:
            return self._cross_attention(x, x, shared_bank=self.release_eval_batch_keys)
        if x.shape[0] % 2:
            raise ValueError(f'AllSpark trains on cat(labeled, unlabeled) with equal halves; got a '
                             f'batch of {x.shape[0]}')
        x_l, x_u = x.chunk(2)
        self.update_memory(x_u.detach(), hw)
        source = self.kv_queue.clone().transpose(1, 2) if self.memory_in_use else x_u
        return torch.cat((self._cross_attention(x_l, source, shared_bank=True), self._self_attention(x_u)))

    # ------------------------------------------------------------------ semantic memory
    def _class_maps(self, n_images: int, hw: tuple[int, int]) -> torch.Tensor:
        """The stored pseudo map resized to the memory grid, flattened: (B_u, K, N)."""
        p = self.pseudo_prob_map
        if p is None:
            raise RuntimeError('AllSparkHead needs the eval-mode logits of the unlabeled batch before a '
                               'train forward: call set_pseudo_prob_map(logits) first')
        if p.shape[0] != n_images or p.shape[1] != self.num_classes:
            raise ValueError(f'pseudo_prob_map has shape {tuple(p.shape)}; expected '
                             f'({n_images}, {self.num_classes}, H, W) for this unlabeled batch')
        if self.memory_grid is None:  # release: square sqrt(N) grid, whatever the real one is
            side = int(round(self.num_tokens ** 0.5))
            size = (side, side)
        else:
            size = tuple(hw)
            if size[0] * size[1] != self.num_tokens:
                raise ValueError(f'the stage-4 grid is {size[0]}x{size[1]} = {size[0] * size[1]} tokens '
                                 f'but the memory holds {self.num_tokens}-token maps (grid '
                                 f'{self.memory_grid[0]}x{self.memory_grid[1]}); set the head\'s '
                                 'image_size to the training crop')
        p = F.interpolate(p.float(), size=size, mode='bilinear', align_corners=False)
        return p.flatten(2)

    def channel_grouping(self, emb_u: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Channel semantic grouping: (B_u, C) class of every channel of every unlabeled sample,
        argmax over classes of the cosine similarity (over tokens) of class map and channel map."""
        cls_maps = F.normalize(self._class_maps(emb_u.shape[0], hw), dim=-1)   # (B, K, N)
        chan_maps = F.normalize(emb_u.float().transpose(1, 2), dim=-1)         # (B, C, N)
        return torch.bmm(cls_maps, chan_maps.transpose(1, 2)).argmax(dim=1)   # (B, C)

    @torch.no_grad()
    def update_memory(self, emb_u: torch.Tensor, hw: tuple[int, int]) -> None:
        """Group the unlabeled channels and write them FIFO into their classes' slots."""
        channel_cls = self.channel_grouping(emb_u, hw)
        self.last_channel_classes = channel_cls
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            if self.memory_sync == 'all_gather':
                emb_u, channel_cls = _all_gather_cat(emb_u), _all_gather_cat(channel_cls)
            elif self.memory_sync == 'rank0_broadcast':
                # The release trains under DDP(broadcast_buffers=True): the forward after each
                # grad-enabled one (the pseudo-label pass) copies rank 0's buffers to every rank;
                # nothing writes the memory between that copy and this update.
                dist.broadcast(self.kv_queue, 0)
                dist.broadcast(self.queue_ptr, 0)
        written = [self.enqueue(emb_u[i], channel_cls[i]) for i in range(emb_u.shape[0])]
        self.last_written_index = torch.cat(written)

    @torch.no_grad()
    def enqueue(self, emb: torch.Tensor, channel_cls: torch.Tensor) -> torch.Tensor:
        """Write one sample's channel maps (emb (N, C), columns) into their classes, in channel
        order, circularly from each class pointer; returns the (class, slot) rows written."""
        classes, slots = self.kv_queue.shape[:2]
        # two host reads per sample (not two per class): the class sizes and the pointers
        counts = torch.bincount(channel_cls, minlength=classes).tolist()
        ptrs = self.queue_ptr.tolist()
        order = torch.argsort(channel_cls, stable=True)   # channels grouped by class, in channel order
        written, start = [], 0
        for k, n in enumerate(counts):
            if n == 0:
                continue
            rows = emb[:, order[start:start + n]].t()
            start += n
            idx = (ptrs[k] + torch.arange(n, device=rows.device)) % slots
            rows, idx = rows[-slots:], idx[-slots:]            # more rows than slots: last ones win
            self.kv_queue[k, idx] = rows.to(self.kv_queue.dtype)
            self.queue_ptr[k] = (ptrs[k] + n) % slots
            written.append(torch.stack((torch.full_like(idx, k), idx), dim=1))
        return torch.cat(written)


def _all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate `t` from every rank in rank order (equal shapes on all ranks)."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


class AllSparkModule(nn.Module):
    """map_in (conv + GELU) -> attn_norm -> attention -> encoder_norm(a + en) -> map_out."""

    def __init__(self, dim: int, attn: ChannelCrossAttentionMemory) -> None:
        super().__init__()
        self.map_in = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())
        self.attn_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = attn
        self.encoder_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.map_out = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU())

    def forward(self, c4: torch.Tensor) -> torch.Tensor:
        b, c, h, w = c4.shape
        en = self.map_in(c4).flatten(2).transpose(1, 2)
        z = self.encoder_norm(self.attn(self.attn_norm(en), (h, w)) + en)
        return self.map_out(z.transpose(1, 2).reshape(z.shape[0], c, h, w))


class LinearProjection(nn.Module):
    """Per-token Linear on a NCHW map (the release's `MLP`), returned as a map."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.proj(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)


class ConvBNReLU(nn.Module):
    """1x1 conv (no bias) + BatchNorm + ReLU, named and initialised as mmcv's ConvModule.

    The release builds `linear_fuse` with `mmcv.cnn.ConvModule(..., norm_cfg=SyncBN)`, whose
    constructor ends with `init_weights()`: Kaiming-normal conv weights (fan_out, ReLU gain), BN
    weight 1 and bias 0; about 5x the std of PyTorch's default for this 3072 -> 768 conv.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode='fan_out', nonlinearity='relu')
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class SegFormerMLPHead(nn.Module):
    """Linear projections of c1..c4, resized to c1 (bilinear, align_corners=False), concatenated
    [c4, c3, c2, c1], fused (conv + BN + ReLU), Dropout2d, 1x1 classifier."""

    def __init__(self, in_channels: Sequence[int], embedding_dim: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        for i, cin in enumerate(in_channels, start=1):
            setattr(self, f'linear_c{i}', LinearProjection(cin, embedding_dim))
        self.linear_fuse = ConvBNReLU(4 * embedding_dim, embedding_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(embedding_dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        maps = []
        for i in (4, 3, 2, 1):
            m = getattr(self, f'linear_c{i}')(feats[i - 1])
            if i > 1:
                m = F.interpolate(m, size=size, mode='bilinear', align_corners=False)
            maps.append(m)
        return self.linear_pred(self.dropout(self.linear_fuse(torch.cat(maps, dim=1))))


@MODELS.register_module()
class AllSparkHead(nn.Module):
    """AllSpark decoder head: `head([c1, c2, c3, c4])` -> logits at c1 resolution.

    State set between calls (by the training method):
    - `set_pseudo_prob_map(logits)`: the eval-mode logits (raw, as the release) of the unlabeled
      half, (B_u, K, H, W); the next train forward groups channels against them.
    - `set_epoch(epoch, validating=False)`: memory read iff `epoch >= warmup_epoch` and not
      validating (the release's `set_SMem_status`); `set_memory_in_use(flag)` sets it directly.
    Inspection after a train forward: `last_channel_classes` (B_u, C),
    `last_written_index` ((class, slot) rows written), `kv_queue`, `queue_ptr`.

    Release defects, each behind a switch; the default (False) is the fix, True the release:
    - `release_patch_num`: memory token count N = (image_size // 32 + 1) ** 2 and a square
      sqrt(N) resize of the pseudo map (fails unless the stage-4 grid happens to be that square,
      e.g. crop 512). Fixed: N from the real MiT stride arithmetic for `image_size` (int or (h, w));
      the map is resized to the real stage-4 h x w.
    - `release_eval_batch_keys`: in eval mode every image attends to the keys of the whole batch
      (outputs depend on batch composition). Fixed: each image attends to its own keys (= batch 1).
    - `release_per_rank_memory`: the release's DDP (`broadcast_buffers=True`) copies rank 0's
      memory to every rank once per iteration (before the train forward), then each rank enqueues
      only its own unlabeled channels, so rank r reads rank 0's memory plus its own last writes.
      Fixed: the channels and their classes are all-gathered first, so every rank writes the same
      rows in the same order and the memories stay identical.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: Sequence[int] = (64, 128, 320, 512),
                 embedding_dim: int = 768,
                 num_heads: int = 2,
                 image_size: int | Sequence[int] = 513,
                 warmup_epoch: int = 5,
                 attn_dropout: float = 0.1,
                 dropout_ratio: float = 0.1,
                 align_corners: bool = False,
                 release_patch_num: bool = False,
                 release_eval_batch_keys: bool = False,
                 release_per_rank_memory: bool = False,
                 with_allspark: bool = True) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f'AllSparkHead reads 4 feature maps; in_channels has {len(in_channels)}')
        if align_corners:
            raise ValueError('AllSpark resizes with align_corners=False')
        self.num_classes = num_classes
        self.align_corners = False
        self.warmup_epoch = warmup_epoch
        if release_patch_num:
            if not isinstance(image_size, int):
                raise ValueError('release_patch_num needs an int image_size (square crops)')
            num_tokens, grid = (image_size // 32 + 1) ** 2, None
        else:
            grid = tuple(mit_output_size(s) for s in _pair(image_size))
            num_tokens = grid[0] * grid[1]
        attn = ChannelCrossAttentionMemory(in_channels[3], num_heads, num_classes, num_tokens, grid,
                                           attn_dropout, release_eval_batch_keys,
                                           release_per_rank_memory)
        # with_allspark=False: the paper's supervised baseline, the SegFormer head alone
        # (xmed-lab/AllSpark model/semseg/semidec_base.py `SemiDecoder`)
        self.allspark = AllSparkModule(in_channels[3], attn) if with_allspark else None
        self.decoder = SegFormerMLPHead(in_channels, embedding_dim, num_classes, dropout_ratio)

    # ------------------------------------------------------------------ state between calls
    @property
    def attn(self) -> ChannelCrossAttentionMemory:
        return self.allspark.attn

    def set_pseudo_prob_map(self, logits: torch.Tensor) -> None:
        """Eval-mode logits (B_u, K, H, W) of the unlabeled batch for the next train forward."""
        self.attn.pseudo_prob_map = logits.detach()

    def set_memory_in_use(self, flag: bool) -> None:
        """Whether the labeled branch reads the memory (True) or the unlabeled tokens (False)."""
        self.attn.memory_in_use = bool(flag)

    def set_epoch(self, epoch: int, validating: bool = False) -> None:
        """The release's `set_SMem_status`: memory read from `warmup_epoch` on, not when validating."""
        self.set_memory_in_use(epoch >= self.warmup_epoch and not validating)

    @property
    def eval_batch_independent(self) -> bool:
        """Per-image eval outputs unless the release's batch-shared keys are switched on."""
        return self.allspark is None or not self.attn.release_eval_batch_keys

    @property
    def memory_in_use(self) -> bool:
        return self.attn.memory_in_use

    @property
    def last_channel_classes(self) -> torch.Tensor | None:
        return self.attn.last_channel_classes

    @property
    def last_written_index(self) -> torch.Tensor | None:
        return self.attn.last_written_index

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        c1, c2, c3, c4 = feats
        return self.decoder([c1, c2, c3, c4 if self.allspark is None else self.allspark(c4)])
