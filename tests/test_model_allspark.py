"""AllSpark (MiT-B5 + AllSpark decoder): the release's goldens with its synthetic seed-1 weights,
and the decoder's behaviour (semantic memory, train/eval, the three fixed release defects) on the
tiny demo config."""
from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from conftest import load_reference_module, require_reference
from mmseg.registry import MODELS

import semiseg.models  # noqa: F401  (registers every model type)
from semiseg.models.builder import load_model_config
from semiseg.models.checkpoint import extract_state_dict, load_state_dict_checked

SHAPES = 'allspark_pascal_state_dict_shapes.json'
GOLDEN = 'allspark_pascal_golden_seed1.npz'
LOGIT_TOL = 1e-4      # logits and attention tensors (reference README)
LN_TOL = 5e-5         # LayerNorm outputs written to the memory (README: about 1e-5; measured 1.4e-5)
ARGMAX_AGREEMENT = 0.9999


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a))


def max_abs(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a - t(b)).abs().max())


# --------------------------------------------------------------------------- goldens (MiT-B5)

@pytest.fixture(scope='module')
def b5(tmp_path_factory):
    """Experiment 50 run 0's model (`semiseg.api.build_model(50, 0)`) with the release switches on and
    dropout / drop path 0 (as the goldens), loaded by `semiseg.api.load_checkpoint` from the synthetic
    seed-1 checkpoint saved in the release format ({'model': {'module.' + key: tensor}})."""
    from semiseg.api import build_model, load_checkpoint
    ref = require_reference(SHAPES, GOLDEN, 'make_goldens_allspark_unimatch.py', 'synth_weights.py')
    shapes = json.loads((ref / SHAPES).read_text())
    synth = load_reference_module('make_goldens_allspark_unimatch')
    sd = synth.synth_release_state_dict({k[len('module.'):]: s for k, s in shapes.items()}, seed=1)
    path = tmp_path_factory.mktemp('allspark') / 'best.pth'
    torch.save({'model': {'module.' + k: v for k, v in sd.items()}, 'epoch': 79, 'previous_best': 76.1}, path)
    release_switches = {'backbone': {'drop_path_rate': 0.0},
                        'decode_head': {'release_patch_num': True, 'release_eval_batch_keys': True,
                                        'attn_dropout': 0.0, 'dropout_ratio': 0.0}}
    model = build_model(50, 0, pretrained=False, model_args=release_switches)
    load_checkpoint(model, path)
    weights = model.convert_release_state_dict(extract_state_dict(torch.load(path, weights_only=True)))
    return SimpleNamespace(model=model.eval(), weights=weights, shapes=shapes,
                           golden=dict(np.load(ref / GOLDEN)))


def test_parameter_counts_and_state_dict_table(b5):
    model = b5.model
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == 89_331_157
    assert count(model.backbone) == 81_443_008
    assert count(model.decode_head) == 7_888_149
    assert count(model.decode_head.allspark) == 4_721_664
    assert count(model.decode_head.decoder) == 3_166_485
    release = {k[len('module.'):]: s for k, s in b5.shapes.items()}
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert len(ours) == 1086 and ours == {k: release[k_old] for k, k_old in
                                          zip(model.convert_release_state_dict(release), release)}
    # the fixed default sizes the memory from the real stage-4 grid: 17 x 17 for crop 513 too
    head_cfg = load_model_config('allspark-mitb5')['model']['decode_head']
    assert MODELS.build(head_cfg).attn.kv_queue.shape == (21, 512, 289)


def test_eval_goldens(b5):
    model, g = b5.model, b5.golden
    attn = model.decode_head.attn
    with torch.no_grad():
        batched = model(t(g['eval_input']))
        odd = model(t(g['odd_input']))
        attn.release_eval_batch_keys = False    # the fixed default: each image its own keys
        try:
            single = model(t(g['eval_input']))
        finally:
            attn.release_eval_batch_keys = True
    assert max_abs(batched, g['eval_logits']) < LOGIT_TOL
    assert max_abs(single[:, :, ::2, ::2], g['eval_single_logits_s2']) < LOGIT_TOL
    assert max_abs(odd, g['odd_logits']) < LOGIT_TOL


@pytest.fixture(scope='module')
def train_run(b5):
    """One train_allspark.py iteration's model calls, with the memory in use (epoch 5) and in a
    warm-up epoch (0), each from freshly loaded weights (memory, BN statistics). The warm-up run
    reuses the backbone features of the first (the backbone is deterministic with drop path 0)
    and runs the head and the segmentor's final resize on them, to save a B5 forward."""
    model, g = b5.model, b5.golden
    head = model.decode_head
    img_x, img_u = t(g['train_img_x']), t(g['train_img_u'])
    batch = torch.cat((img_x, img_u))
    runs, feats = {}, []
    with torch.no_grad():
        model.eval()
        pseudo = model(img_u)
        for tag, epoch in (('smem', 5), ('warmup', 0)):
            load_state_dict_checked(model, b5.weights)
            head.set_epoch(epoch)
            head.set_pseudo_prob_map(pseudo)
            seen = {}
            hooks = [head.attn.register_forward_hook(
                lambda m, args, out, seen=seen: seen.update(attn_in=args[0].clone(), attn_out=out.clone())),
                model.backbone.register_forward_hook(lambda m, args, out: feats.append(out))]
            model.train()
            try:
                if feats:
                    preds = F.interpolate(head(feats[0]), size=batch.shape[-2:], mode='bilinear',
                                          align_corners=False)
                else:
                    preds = model(batch)
            finally:
                for hook in hooks:
                    hook.remove()
                model.eval()
            bn = head.decoder.linear_fuse.bn
            runs[tag] = dict(preds=preds, kv=head.attn.kv_queue.clone(), ptr=head.attn.queue_ptr.clone(),
                             cls=head.last_channel_classes.clone(), written=head.last_written_index.clone(),
                             bn_mean=bn.running_mean.clone(), bn_var=bn.running_var.clone(),
                             in_use=head.memory_in_use, **seen)
    load_state_dict_checked(model, b5.weights)
    return SimpleNamespace(pseudo=pseudo, runs=runs)


def test_pseudo_label_pass(b5, train_run):
    g = b5.golden
    assert max_abs(train_run.pseudo[:, :, ::8, ::8], g['train_pseudo_logits_s8']) < LOGIT_TOL
    assert (train_run.pseudo.argmax(1).numpy() == g['train_pseudo_label']).mean() >= ARGMAX_AGREEMENT


@pytest.mark.parametrize('tag', ['smem', 'warmup'])
def test_train_forward_logits_and_losses(b5, train_run, tag):
    g, run = b5.golden, train_run.runs[tag]
    assert run['in_use'] == (tag == 'smem')
    preds = run['preds']
    assert max_abs(preds[:, :, ::8, ::8], g[f'{tag}_logits_s8']) < LOGIT_TOL
    assert (preds.argmax(1).numpy() == g[f'{tag}_argmax']).mean() >= ARGMAX_AGREEMENT
    pred_x, pred_u = preds.split([2, 2])
    loss_x = F.cross_entropy(pred_x, t(g['train_mask_x']).long(), ignore_index=255)
    loss_u = F.cross_entropy(pred_u, train_run.pseudo.argmax(1), ignore_index=255)
    assert abs(float(loss_x) - float(g[f'{tag}_loss_x'])) < 1e-5
    assert abs(float(loss_u) - float(g[f'{tag}_loss_u'])) < 1e-5
    assert abs(float((loss_x + loss_u) / 2) - float(g[f'{tag}_loss'])) < 1e-5


def test_train_attention_tensors_and_bn_statistics(b5, train_run):
    g, smem = b5.golden, train_run.runs['smem']
    for run in train_run.runs.values():
        assert max_abs(run['attn_in'], g['train_attn_in']) < LN_TOL
    assert max_abs(smem['attn_out'], g['smem_attn_out']) < LOGIT_TOL
    assert max_abs(smem['bn_mean'], g['smem_fuse_bn_running_mean']) < 1e-5
    assert max_abs(smem['bn_var'], g['smem_fuse_bn_running_var']) < 1e-5


def test_train_memory_update(b5, train_run):
    g = b5.golden
    before = b5.weights['decode_head.allspark.attn.kv_queue']
    idx = t(g['kv_written_index'])
    for run in train_run.runs.values():       # the update does not depend on the memory being read
        assert (run['cls'].numpy() != g['train_channel_cls']).sum() <= 3
        assert torch.equal(run['ptr'], t(g['queue_ptr_after']))
        written = run['written'][torch.argsort(run['written'][:, 0] * 10_000 + run['written'][:, 1])]
        assert torch.equal(written, idx)
        assert max_abs(run['kv'][idx[:, 0], idx[:, 1]], g['kv_written_value']) < LN_TOL
        untouched = torch.ones(before.shape[:2], dtype=torch.bool)
        untouched[idx[:, 0], idx[:, 1]] = False
        assert torch.equal(run['kv'][untouched], before[untouched])


# --------------------------------------------------------------------------- behaviour (tiny)

K, C = 5, 64   # tiny config: classes, stage-4 channels (= memory slots per class)


def tiny_cfg(**head) -> dict:
    cfg = load_model_config('allspark-mit-tiny')['model']
    cfg['decode_head'].update(head)
    return cfg


def tiny_model(**head):
    torch.manual_seed(0)
    return MODELS.build(tiny_cfg(**head))


def tiny_head(**head):
    torch.manual_seed(0)
    return MODELS.build(tiny_cfg(**head)['decode_head'])


def tiny_feats(batch: int, gen: torch.Generator, grid: tuple[int, int] = (2, 2)) -> list[torch.Tensor]:
    h, w = grid
    return [torch.randn(batch, c, h * s, w * s, generator=gen)
            for c, s in zip((16, 32, 48, 64), (8, 4, 2, 1))]


PATTERNS = torch.tensor([[1., 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, -1, -1]])


def test_channels_go_to_their_class_slots_fifo():
    """Channel c of a hand-made 2x2 map is (c + 1) * pattern[c % 5]; class map k is pattern[k]:
    channel c belongs to class c % 5 and is written, in channel order, from the class pointer on
    (class 4 starts at slot 62 of 64 and wraps)."""
    attn = tiny_head().attn
    attn.kv_queue.zero_()
    ptr0 = torch.tensor([0, 3, 0, 0, 62])
    attn.queue_ptr.copy_(ptr0)
    emb = (PATTERNS[torch.arange(C) % K].t() * torch.arange(1, C + 1)).unsqueeze(0)   # (1, N=4, C)
    attn.pseudo_prob_map = PATTERNS.view(1, K, 2, 2)
    attn.update_memory(emb, (2, 2))
    assert torch.equal(attn.last_channel_classes, (torch.arange(C) % K).unsqueeze(0))
    expected_rows = set()
    for k in range(K):
        chans = torch.arange(k, C, K)
        slots = (ptr0[k] + torch.arange(len(chans))) % C
        assert torch.equal(attn.kv_queue[k, slots], emb[0, :, chans].t())
        expected_rows |= {(k, int(s)) for s in slots}
        assert attn.queue_ptr[k] == (ptr0[k] + len(chans)) % C
    assert attn.queue_ptr[4] == 10                                     # 62 + 12 channels wrapped
    assert {tuple(r) for r in attn.last_written_index.tolist()} == expected_rows
    written = torch.zeros(K, C, dtype=torch.bool)
    written[attn.last_written_index[:, 0], attn.last_written_index[:, 1]] = True
    assert not attn.kv_queue[~written].any()


def test_class_receiving_more_rows_than_slots_wraps():
    attn = tiny_head().attn
    # two samples whose 64 channels all belong to class 2: 128 rows into 64 slots from slot 10
    attn.queue_ptr.fill_(0)
    attn.queue_ptr[2] = 10
    emb = torch.stack([PATTERNS[2].unsqueeze(1) * torch.arange(1., C + 1) + 100 * i for i in range(2)])
    attn.pseudo_prob_map = PATTERNS.view(1, K, 2, 2).expand(2, -1, -1, -1)
    attn.update_memory(emb, (2, 2))
    assert (attn.last_channel_classes == 2).all()
    slots = (10 + torch.arange(C)) % C
    assert torch.equal(attn.kv_queue[2, slots], emb[1].t())           # the later sample wins
    assert attn.queue_ptr.tolist() == [0, 0, 10, 0, 0]
    # one call with 150 rows for class 3: slot s holds the last row written there
    rows = torch.randn(4, 150)
    attn.enqueue(rows, torch.full((150,), 3))
    assert attn.queue_ptr[3] == 150 % C
    for s in range(C):
        last = max(i for i in range(150) if i % C == s)
        assert torch.equal(attn.kv_queue[3, s], rows[:, last])


def test_eval_leaves_memory_alone_and_train_updates_it():
    model = tiny_model()
    head = model.decode_head
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    kv0, ptr0 = head.attn.kv_queue.clone(), head.attn.queue_ptr.clone()
    model.eval()
    with torch.no_grad():
        head.set_memory_in_use(True)
        with_mem = model(x[2:])
        head.set_memory_in_use(False)
        without = model(x[2:])
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, K, 50, 70)   # any size in eval
    assert torch.equal(with_mem, without)
    assert torch.equal(head.attn.kv_queue, kv0) and torch.equal(head.attn.queue_ptr, ptr0)
    model.train()
    head.set_epoch(0)
    head.set_pseudo_prob_map(without)
    preds = model(x)
    assert preds.shape == (4, K, 64, 64)
    assert not torch.equal(head.attn.kv_queue, kv0)
    assert int((head.attn.queue_ptr - ptr0).sum()) % C == 0 and head.last_channel_classes.shape == (2, C)
    preds.square().mean().backward()
    attn = head.attn
    for name in ('q_u', 'k_u', 'v_u', 'q_l2u', 'k_l2u', 'v_l2u', 'out_u', 'out_l2u'):
        grad = getattr(attn, name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_labeled_branch_reads_memory_only_after_warmup():
    head = tiny_head(attn_dropout=0.0, dropout_ratio=0.0).train()
    gen = torch.Generator().manual_seed(1)
    feats = tiny_feats(4, gen)
    head.set_pseudo_prob_map(torch.randn(2, K, 8, 8, generator=gen))
    seen = []
    head.attn.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    for epoch in (0, 5):
        head.set_epoch(epoch)
        for seed in (1, 2):       # two different memories before the call
            head.attn.kv_queue.copy_(torch.randn(K, C, 4, generator=torch.Generator().manual_seed(seed)))
            head.attn.queue_ptr.zero_()
            with torch.no_grad():
                head(feats)
    warm_a, warm_b, mem_a, mem_b = seen
    assert torch.equal(warm_a, warm_b)                       # warm-up: keys from the unlabeled half
    assert not torch.allclose(mem_a[:2], mem_b[:2], atol=1e-4)   # after warm-up: from the memory
    assert torch.equal(mem_a[2:], mem_b[2:])                 # the unlabeled branch never reads it
    head.set_epoch(7, validating=True)
    assert not head.memory_in_use


def test_train_forward_errors():
    head = tiny_head().train()
    gen = torch.Generator().manual_seed(2)
    with pytest.raises(RuntimeError, match='set_pseudo_prob_map'):
        head(tiny_feats(4, gen))
    head.set_pseudo_prob_map(torch.randn(3, K, 8, 8))
    with pytest.raises(ValueError, match='pseudo_prob_map has shape'):
        head(tiny_feats(4, gen))
    with pytest.raises(ValueError, match='equal halves'):
        head(tiny_feats(3, gen))


def _train_step(model, x: torch.Tensor) -> torch.Tensor:
    head = model.decode_head
    with torch.no_grad():
        model.eval()
        head.set_pseudo_prob_map(model(x[x.shape[0] // 2:]))
        model.train()
        return model(x)


def test_crop_512_fixed_works_release_fails():
    x = torch.randn(4, 3, 512, 512)
    fixed = tiny_model(image_size=512)
    assert fixed.decode_head.attn.kv_queue.shape == (K, C, 256)      # 16 x 16 stage-4 grid
    assert _train_step(fixed, x).shape == (4, K, 512, 512)
    release = tiny_model(image_size=512, release_patch_num=True)
    assert release.decode_head.attn.kv_queue.shape == (K, C, 289)    # (512 // 32 + 1) ** 2
    with pytest.raises(RuntimeError):
        _train_step(release, x)
    with pytest.raises(ValueError, match='image_size'):           # fixed, but built for another crop
        _train_step(tiny_model(image_size=96), x[..., :64, :64])


def test_non_square_crop_groups_against_the_real_grid():
    model = tiny_model(image_size=(64, 96))
    head = model.decode_head
    assert head.attn.kv_queue.shape == (K, C, 6)                      # 2 x 3 stage-4 grid
    seen = []
    head.attn.register_forward_hook(lambda m, a, out: seen.append(a[0].detach()))
    x = torch.randn(4, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    _train_step(model, x)
    emb_u = seen[-1][2:]
    maps = F.interpolate(head.attn.pseudo_prob_map, size=(2, 3), mode='bilinear', align_corners=False)
    cos = F.cosine_similarity(maps.flatten(2).unsqueeze(2), emb_u.transpose(1, 2).unsqueeze(1), dim=-1)
    assert torch.equal(head.last_channel_classes, cos.argmax(1))
    with pytest.raises(ValueError, match='int image_size'):
        tiny_model(image_size=(64, 96), release_patch_num=True)
    with pytest.raises(RuntimeError):
        _train_step(tiny_model(image_size=64, release_patch_num=True), x)


def test_eval_keys_per_image_fixed_batch_shared_in_release():
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    for release in (False, True):
        model = tiny_model(release_eval_batch_keys=release).eval()
        with torch.no_grad():
            batched = model(x)
            single = torch.cat([model(x[i:i + 1]) for i in range(3)])
        diff = float((batched - single).abs().max())
        assert (diff > 1e-4) if release else (diff < 1e-5), (release, diff)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    """Two iterations per switch; the same initial weights and memory on both ranks, different
    unlabeled data per rank."""
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        result = {}
        for release in (False, True):
            head = tiny_head(release_per_rank_memory=release).train()
            head.set_epoch(5)
            gen = torch.Generator().manual_seed(100 + rank)
            for _ in range(2):
                head.set_pseudo_prob_map(torch.randn(2, K, 8, 8, generator=gen))
                with torch.no_grad():
                    head(tiny_feats(4, gen))
            result[release] = (head.attn.kv_queue.clone(), head.attn.queue_ptr.clone())
        torch.save(result, f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_ddp_memories_stay_identical_only_when_fixed(tmp_path):
    # fork: the workers inherit the imported modules (spawn would re-import mmseg per worker)
    mp.start_processes(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    kv0, ptr0 = r0[False]
    kv1, ptr1 = r1[False]
    assert torch.equal(kv0, kv1) and torch.equal(ptr0, ptr1)
    assert int(ptr0.sum()) % C == (2 * 2 * 2 * C) % C                # 2 iterations x 2 ranks x 2 images
    kv0, ptr0 = r0[True]
    kv1, ptr1 = r1[True]
    assert not torch.equal(kv0, kv1)
