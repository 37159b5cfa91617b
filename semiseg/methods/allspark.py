"""AllSpark (CVPR 2024): pseudo-labels from an eval-mode pass, one train-mode pass with the memory.

xmed-lab/AllSpark `train_allspark.py`, one iteration:
1. the decoder is told whether the semantic memory is read (`epoch >= warmup_epoch`);
2. eval mode, no_grad: p = model(img_u) on the *weak* unlabeled view; p (raw logits) becomes the
   decoder's pseudo-probability map, argmax(p) the pseudo-label;
3. train mode: preds = model(cat(img_x, img_u)) with the labeled image's *strong* photometric view
   and the same weak unlabeled tensor; the memory is updated inside this forward;
4. L = (CE(pred_x, mask_x) + CE(pred_u, argmax p)) / 2, no confidence threshold.
The release trains padded unlabeled pixels on their pseudo-labels; with `ignore_unlabeled_padding`
(default) they are ignored through the 254 padding mark. `warmup_epoch: None` reproduces the
release's coco config, which lacks the key and crashes at model construction.
"""
from __future__ import annotations

import torch
from torch import nn

from semiseg.utils.labels import IGNORE_INDEX
from semiseg.utils.modules import unwrap

from .base import Method, StepContext, StepResult, keep_visuals
from .losses import CrossEntropy, build_criterion, head_loss
from .mixing import pseudo_label


class AllSpark(Method):
    """The AllSpark step on a model whose decode head is `AllSparkHead`."""

    name = 'allspark'
    # debug panel: labeled and unlabeled columns (no strong views, no feature perturbation)
    visual_layout = (('img_x', 'img_u'), ('pred_x', 'pred_u'), ('mask_x', 'pl_u'))

    def __init__(self, cfg: dict, model: nn.Module):
        super().__init__(cfg, model)
        head = getattr(unwrap(model), 'decode_head', None)
        if not (hasattr(head, 'set_pseudo_prob_map') and hasattr(head, 'set_memory_in_use')):
            raise ValueError("method 'allspark' needs the AllSpark decoder (a model mmseg.allspark-*); "
                             f'{type(head).__name__} has no semantic memory')
        if cfg['warmup_epoch'] is None:
            raise ValueError('warmup_epoch is None, as in the AllSpark release\'s coco config, where the model '
                             'cannot be built (TypeError: missing warmup_epoch); set warmup_epoch to a number of '
                             'epochs (our coco runs use 1: 1/16 of the schedule, as pascal 5/80 and cityscapes '
                             '15/240)')
        self.warmup_epoch = int(cfg['warmup_epoch'])
        self.ignore_padding = bool(cfg['ignore_unlabeled_padding'])
        self.criterion_l = build_criterion(cfg['criterion'], head_loss(model))
        self.criterion_u = CrossEntropy(IGNORE_INDEX)

    @property
    def head(self) -> nn.Module:
        return unwrap(self.model).decode_head

    def step(self, batch: dict, ctx: StepContext) -> StepResult:
        self.check_batch(batch)
        img_x, img_u = batch['img_x_s'], batch['img_w']
        self.head.set_memory_in_use(ctx.epoch >= self.warmup_epoch)
        with torch.no_grad():
            self.model.eval()
            pred_pl = self.model(img_u).detach()
        self.head.set_pseudo_prob_map(pred_pl)
        conf_u, target_u = pseudo_label(pred_pl)
        if self.ignore_padding:
            target_u = target_u.masked_fill(batch['ignore'] == IGNORE_INDEX, IGNORE_INDEX)

        self.model.train()
        preds = self.model(torch.cat((img_x, img_u)))
        pred_x, pred_u = preds.split([img_x.shape[0], img_u.shape[0]])
        losses = {'loss_x': self.criterion_l(pred_x, batch['mask_x']),
                  'loss_u': self.criterion_u(pred_u, target_u)}
        stats = {'memory_in_use': float(self.head.memory_in_use),
                 'mean_conf': conf_u.mean().detach()}
        visuals = {}
        if ctx.want_visuals:
            visuals = keep_visuals({'img_x': img_x, 'img_u': img_u, 'pred_x': pred_x.argmax(1),
                                    'pred_u': pred_u.argmax(1), 'mask_x': batch['mask_x'],
                                    'pl_u': target_u}, ctx.max_visuals)
        return StepResult(losses, {'loss_x': 0.5, 'loss_u': 0.5}, stats, visuals)
