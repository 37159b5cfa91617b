"""Every switch of the README's "Release switches" table: its release value reproduces what the
release does (xmed-lab/AllSpark `train_allspark.py`, `model/semseg/allspark.py`; LiheYoung/UniMatch
`supervised.py`; LiheYoung/UniMatch-V2 `unimatch_v2.py`), on tiny models, CPU.

The central one is `release_per_rank_memory`: AllSpark trains under DDP with
`broadcast_buffers=True` (the default), so at the forward after every grad-enabled one (each
iteration's pseudo-label pass) rank 0's `kv_queue`/`queue_ptr` are copied to every rank, and each
rank then enqueues its own channels. Two gloo ranks train our switch, wrapped as our engine wraps
models (`broadcast_buffers=False`), next to a model wrapped as the release wraps it: a plain
`DistributedDataParallel` (`broadcast_buffers=True`) around a head whose memory is process-local.
"""
from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import nn

import semiseg.models  # noqa: F401  (registers every model type)
from semiseg.methods import build_method
from semiseg.methods.base import StepContext
from semiseg.models.builder import load_model_config

K = 5           # classes of the tiny AllSpark model
ITERS = 4       # iterations 0, 1 warm up; 2, 3 read the memory
WARMUP = 2


def allspark_cfg(**method) -> dict:
    return {'method': 'allspark', 'warmup_epoch': WARMUP, 'ignore_unlabeled_padding': False,
            'criterion': {'name': 'CELoss', 'kwargs': {'ignore_index': 255}}, **method}


def tiny_allspark(**head) -> nn.Module:
    """exp 0's tiny AllSpark without randomness in the forward (dropout and drop-path 0); BN
    momentum 0 stands in for the release's SyncBN, whose running statistics are equal on all ranks
    (CPU has no SyncBN), so broadcasting them changes nothing here either."""
    cfg = load_model_config('allspark-mit-tiny')['model']
    cfg['backbone']['drop_path_rate'] = 0.0
    cfg['decode_head'].update(attn_dropout=0.0, dropout_ratio=0.0, warmup_epoch=WARMUP, **head)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0
    return model


def allspark_batch(gen: torch.Generator, b: int = 2, size: int = 64) -> dict:
    ignore = torch.zeros(b, size, size, dtype=torch.long)
    ignore[:, :, size - 8:] = 255                        # padded right band of the unlabeled crops
    return {'img_x_s': torch.randn(b, 3, size, size, generator=gen),
            'mask_x': torch.randint(0, K, (b, size, size), generator=gen),
            'img_w': torch.randn(b, 3, size, size, generator=gen), 'ignore': ignore}


def release_iteration(model: nn.Module, batch: dict, epoch: int) -> torch.Tensor:
    """One `train_allspark.py` iteration's loss (`model` is the DDP wrapper)."""
    head = model.module.decode_head
    head.set_epoch(epoch)                                 # set_SMem_status(epoch, False)
    with torch.no_grad():
        model.eval()
        pred_u_pseudo = model(batch['img_w']).detach()
        head.set_pseudo_prob_map(pred_u_pseudo)
    model.train()
    preds = model(torch.cat((batch['img_x_s'], batch['img_w'])))
    pred_x, pred_u = preds.split([2, 2])
    loss_x = F.cross_entropy(pred_x, batch['mask_x'], ignore_index=255)
    loss_u = F.cross_entropy(pred_u, pred_u_pseudo.argmax(1), ignore_index=255)
    return (loss_x + loss_u) / 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _memory_worker(rank: int, port: int, out_dir: str) -> None:
    from semiseg.engine.distributed import DistInfo, wrap_model
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        records = {}
        for variant in ('switch', 'release', 'local'):
            model = tiny_allspark(release_per_rank_memory=True)
            attn = model.decode_head.attn
            if variant == 'switch':      # ours: the engine's wrapping, the switch does the broadcast
                wrapped = wrap_model(model, DistInfo(rank=rank, world_size=2), torch.device('cpu'))
                method = build_method(allspark_cfg(), wrapped)
            else:                        # the release's head: the memory is the process's own
                attn.memory_sync = 'none'
                wrapped = (nn.parallel.DistributedDataParallel(model) if variant == 'release' else
                           wrap_model(model, DistInfo(rank=rank, world_size=2), torch.device('cpu')))
            opt = torch.optim.SGD(wrapped.parameters(), lr=0.05)
            gen = torch.Generator().manual_seed(100 + rank)   # each rank its own data
            rec = []
            for it in range(ITERS):
                batch = allspark_batch(gen)
                if variant == 'switch':
                    loss = method.step(batch, StepContext(iteration=it, total_iters=ITERS, epoch=it)).total()
                else:
                    loss = release_iteration(wrapped, batch, epoch=it)
                opt.zero_grad()
                loss.backward()
                opt.step()
                rec.append((loss.detach(), attn.kv_queue.clone(), attn.queue_ptr.clone()))
            records[variant] = rec
        torch.save(records, f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_per_rank_memory_switch_reproduces_release_ddp_broadcast(tmp_path):
    # fork: the workers inherit the imported modules (spawn would re-import mmseg per worker)
    mp.start_processes(_memory_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1)]
    for rank, rec in enumerate(ranks):
        for it, (ours, release) in enumerate(zip(rec['switch'], rec['release'])):
            assert torch.allclose(ours[0], release[0], atol=1e-6), (rank, it, ours[0], release[0])
            assert torch.allclose(ours[1], release[1], atol=1e-6), (rank, it)
            assert torch.equal(ours[2], release[2]), (rank, it)
    r0, r1 = ranks[0]['release'], ranks[1]['release']
    for it in range(ITERS):
        assert not torch.equal(r0[it][1], r1[it][1])      # each rank enqueues its own channels ...
    # ... on top of rank 0's memory of the previous iteration: rank 1's pointers are rank 0's
    # plus its own channel counts, which sum to 2 images x 64 channels per iteration
    for it in range(1, ITERS):
        assert int(((r1[it][2] - r0[it - 1][2]) % 64).sum()) % 64 == (2 * 64) % 64
    # the memory read after warm-up changes the losses: a process-local memory without the
    # broadcast (what the switch did before) does not reproduce rank 1's release losses
    local = ranks[1]['local']
    assert not torch.allclose(local[ITERS - 1][1], r1[ITERS - 1][1])
    assert not torch.allclose(local[ITERS - 1][0], r1[ITERS - 1][0], atol=1e-6)


# --------------------------------------------------------------------------- AllSpark, one process

def test_missing_warmup_epoch_is_refused_as_the_release_cannot_build():
    """coco_allspark.yaml has no warmup_epoch: the release's SemiDecoder raises a TypeError at
    construction. `warmup_epoch: null` stops with the reason; our COCO runs set 1."""
    from semiseg.experiments.registry import get_runs
    with pytest.raises(ValueError, match='warmup_epoch is None'):
        build_method(allspark_cfg(warmup_epoch=None), tiny_allspark())
    assert {r['warmup_epoch'] for r in get_runs(53)} == {1}


@pytest.mark.parametrize('release', [True, False])
def test_unlabeled_padding_trained_as_release_or_ignored(release):
    """Release: loss_u = CE(pred_u, argmax p) over every pixel, the padded band included."""
    model = tiny_allspark()
    method = build_method(allspark_cfg(ignore_unlabeled_padding=not release), model)
    batch = allspark_batch(torch.Generator().manual_seed(0))
    outs = []
    hook = model.register_forward_hook(lambda mod, args, out: outs.append(out.detach()))
    try:
        loss_u = method.step(batch, StepContext(epoch=0)).losses['loss_u']
    finally:
        hook.remove()
    pseudo, preds = outs                                  # the eval pass, then the train pass
    target = pseudo.argmax(1)
    release_loss = F.cross_entropy(preds[2:], target, ignore_index=255)
    fixed_loss = F.cross_entropy(preds[2:], target.masked_fill(batch['ignore'] == 255, 255), ignore_index=255)
    assert not torch.allclose(release_loss, fixed_loss)
    assert torch.allclose(loss_u, release_loss if release else fixed_loss, atol=1e-6)


def tiny_head(**head) -> nn.Module:
    cfg = load_model_config('allspark-mit-tiny')['model']['decode_head']
    cfg.update(attn_dropout=0.0, dropout_ratio=0.0, **head)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def tiny_feats(batch: int, grid: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(batch, c, grid * s, grid * s, generator=gen) for c, s in zip((16, 32, 48, 64), (8, 4, 2, 1))]


def train_forward(head: nn.Module, grid: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    head.train().set_pseudo_prob_map(torch.randn(2, K, 4 * grid, 4 * grid, generator=gen))
    with torch.no_grad():
        return head(tiny_feats(4, grid, gen))


def test_release_patch_num_square_memory_of_the_release_formula():
    """Release: N = (image_size // 32 + 1) ** 2 (289 for 513) and a square sqrt(N) resize of the
    pseudo map; a crop of 512 (a 16 x 16 stage-4 grid) fails in the memory write."""
    head = tiny_head(release_patch_num=True, image_size=513)
    assert head.attn.kv_queue.shape == (K, 64, 289)
    assert train_forward(head, 17).shape[-2:] == (136, 136)
    with pytest.raises(RuntimeError):
        train_forward(tiny_head(release_patch_num=True, image_size=512), 16)
    fixed = tiny_head(image_size=512)                     # the real stage-4 grid
    assert fixed.attn.kv_queue.shape == (K, 64, 256)
    assert train_forward(fixed, 16).shape[-2:] == (128, 128)


def test_release_eval_batch_keys_is_the_release_eval_path():
    """Release eval (`AllSpark.forward`, not training): the tokens are duplicated and run through
    the training branches, so the labeled branch takes keys/values from every image of the batch
    (the warm-up source). Ours with the switch equals that; without it, each image alone."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 64, generator=gen)              # 3 images, 4 tokens, 64 channels
    attn = tiny_head(release_eval_batch_keys=True).attn
    attn.pseudo_prob_map = torch.randn(3, K, 2, 2, generator=gen)
    attn.memory_in_use = False
    with torch.no_grad():
        release = attn.train()(torch.cat((x, x)), (2, 2))[:3]
        ours = attn.eval()(x, (2, 2))
        attn.release_eval_batch_keys = False
        per_image = attn(x, (2, 2))
        single = torch.cat([attn(x[i:i + 1], (2, 2)) for i in range(3)])
    assert torch.allclose(ours, release, atol=1e-6)
    assert torch.allclose(per_image, single, atol=1e-6)
    assert not torch.allclose(per_image, release, atol=1e-4)


@pytest.mark.parametrize('release', [True, False])
def test_release_eval_batch_keys_also_sets_the_pseudo_label_pass(release):
    """The training step's pseudo-labels come from an eval-mode pass over the unlabeled batch: with
    the release's batch keys an image's pseudo-labels depend on the other images of its batch."""
    maps = []
    for partner in (1, 2):
        model = tiny_allspark(release_eval_batch_keys=release)
        method = build_method(allspark_cfg(), model)
        batch = allspark_batch(torch.Generator().manual_seed(0))
        batch['img_w'][1] = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(partner))
        method.step(batch, StepContext(epoch=0))
        maps.append(model.decode_head.attn.pseudo_prob_map[0])
    assert torch.allclose(maps[0], maps[1], atol=1e-5) != release


# --------------------------------------------------------------------------- UniMatch V2, SemiVL/UniMatch

def test_lock_backbone_freezes_the_encoder_that_still_runs():
    """unimatch_v2.py `lock_backbone()`: requires_grad False on every encoder parameter; the
    encoder still runs, the head trains."""
    from semiseg.experiments.registry import get_runs
    from semiseg.models import build_segmentor
    cfg = {**get_runs(0)[6], 'lock_backbone': True}
    torch.manual_seed(0)
    model = build_segmentor(cfg, pretrained=False)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.decode_head.parameters())
    method = build_method(cfg, model)
    gen = torch.Generator().manual_seed(0)
    crop = cfg['crop_size']
    img = lambda: torch.randn(2, 3, crop, crop, generator=gen)  # noqa: E731
    box = torch.zeros(2, crop, crop)
    batch = {'img_x': img(), 'mask_x': torch.randint(0, cfg['nclass'], (2, crop, crop), generator=gen),
             'img_w': img(), 'img_s1': img(), 'img_s2': img(), 'ignore': torch.zeros(2, crop, crop, dtype=torch.long),
             'box1': box, 'box2': box}
    method.step(batch, StepContext()).total().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decode_head.parameters())


@pytest.mark.parametrize('epoch_over, expected', [('labeled', 16), ('unlabeled', 20)])
def test_supervised_epoch_over(tmp_path, epoch_over, expected):
    """UniMatch's and SemiVL's supervised.py iterate over the labeled list alone (`labeled`, the
    release and our default); `unlabeled` gives the semi-supervised runs' epoch length."""
    from _toy_data import trimmed_toy

    from semiseg.data.build import build_datasets
    from semiseg.experiments.registry import get_runs
    from semiseg.methods import method_info
    root = trimmed_toy(tmp_path, unlabeled=20, val=2) / 'toy'
    cfg = {**get_runs(0)[0], 'data_root': str(root), 'epoch_over': epoch_over}
    data = build_datasets(cfg, method_info('supervised'))
    assert len(data.labeled) == expected and data.unlabeled is None
