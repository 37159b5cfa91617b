"""Text embeddings: class definitions vs the release files, encoding with a tiny random CLIP,
search order, caching and error messages (no network)."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from semiseg.data import class_definitions as defs
from semiseg.models import text_embeddings as T
from semiseg.models import weights as W

REF = Path(__file__).resolve().parents[1].parent / 'shared' / 'reference' / 'text_embedding'

# Group sizes measured on the release's concept files (normalised group means == conceptavg rows).
VOC_CONCEPT4_SIZES = [45, 3, 3, 1, 4, 4, 2, 4, 2, 3, 1, 2, 2, 4, 4, 4, 3, 1, 1, 2, 3]
CS_CONCEPT3_SIZES = [3, 1, 7, 1, 2, 3, 1, 3, 3, 4, 1, 7, 3, 4, 4, 1, 2, 3, 1]


def tiny_clip_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random CLIP (real tokenizer vocabulary, tiny widths) saved as an OpenAI-style state dict."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(32, CLIPVisionCfg(layers=1, width=64, patch_size=16, image_size=32),
                 CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
                 quick_gelu=True)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope='module')
def clip_ckpt(tmp_path_factory):
    return tiny_clip_checkpoint(tmp_path_factory.mktemp('clip') / 'tiny_clip.pt')


@pytest.fixture(scope='module')
def clip_model(clip_ckpt):
    return T.load_clip_text_model(clip_ckpt)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No user cache, no env overrides: everything under tmp_path."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.delenv(T.ENV_DIR, raising=False)
    monkeypatch.delenv(W.ENV_CLIP, raising=False)
    return tmp_path


def test_concept_group_sizes_match_release_fact():
    assert [len(c) for c in defs.PASCAL_CONCEPTS_4] == VOC_CONCEPT4_SIZES
    assert [len(c) for c in defs.CITYSCAPES_CONCEPTS_3] == CS_CONCEPT3_SIZES
    assert len(defs.CLASS_NAMES['pascal']) == 21 and len(defs.CLASS_NAMES['coco']) == 81
    assert len(defs.CLASS_NAMES['ade']) == 150 and len(defs.CLASS_NAMES['cityscapes']) == 19
    assert defs.CLASS_NAMES['ade'][7] == 'bed '
    groups = T.concept_groups({'dataset': 'pascal', 'mcc_text': 'concept4_single'}, 'mcc')
    assert [len(g) for g in groups] == VOC_CONCEPT4_SIZES
    assert groups[1] == [45, 46, 47] and groups[-1] == [95, 96, 97]


@pytest.mark.parametrize('dataset,k,nclass', [('pascal', 4, 21), ('cityscapes', 3, 19)])
def test_groups_agree_with_release_files(dataset, k, nclass):
    prefix = T.text_prefix(dataset)
    concept_f = REF / f'{prefix}_concept{k}_single.npy'
    avg_f = REF / f'{prefix}_conceptavg{k}_single.npy'
    if not (concept_f.is_file() and avg_f.is_file()):
        pytest.skip('reference text embeddings not available')
    concepts = np.load(concept_f).astype(np.float32)
    avg = np.load(avg_f).astype(np.float32)
    groups = T.concept_groups({'dataset': dataset, 'text_embedding_variant': f'concept{k}_single'},
                              'text')
    assert sum(len(g) for g in groups) == concepts.shape[0] and len(groups) == avg.shape[0] == nclass
    means = np.stack([concepts[g].mean(0) for g in groups])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    cos = (means * avg).sum(1)
    assert cos.min() > 0.999, cos
    # a shifted grouping must not pass: the check has teeth
    shifted = [[i + 1 for i in g] for g in groups[:-1]]
    bad = np.stack([concepts[g].mean(0) for g in shifted])
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    assert (bad * avg[:-1]).sum(1).min() < 0.999


@pytest.mark.parametrize('name', ['voc12_wbg_single', 'coco_single', 'ade_single', 'cityscapes_single'])
def test_release_single_files_have_one_row_per_class(name):
    f = REF / f'{name}.npy'
    if not f.is_file():
        pytest.skip('reference text embeddings not available')
    arr = np.load(f)
    dataset = {'voc12_wbg': 'pascal'}.get(name.rsplit('_', 1)[0], name.rsplit('_', 1)[0])
    assert arr.dtype == np.float16 and arr.shape == (len(defs.CLASS_NAMES[dataset]), 512)


def test_encoding_matches_clip_and_is_normalised(clip_model):
    import open_clip

    emb = T.compute_text_embedding('cityscapes', 'single', clip_model)
    assert emb.dtype == np.float16 and emb.shape == (19, 32)
    with torch.no_grad():
        tok = open_clip.tokenize(['a photo of a traffic light'])
        ref = clip_model.encode_text(tok).float()
    ref = (ref / ref.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(emb[6].astype(np.float32), ref[0], atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1, atol=2e-3)


def test_conceptavg_is_mean_of_raw_concepts(clip_model):
    concept = T.compute_text_embedding('cityscapes', 'concept3_single', clip_model)
    avg = T.compute_text_embedding('cityscapes', 'conceptavg3_single', clip_model)
    assert concept.shape == (54, 32) and avg.shape == (19, 32)
    raw = T.encode_texts(clip_model, T.prompt_rows('cityscapes', 'concept3_single'))
    groups = T.concept_groups({'dataset': 'cityscapes', 'mcc_text': 'concept3_single'}, 'mcc')
    expected = torch.stack([raw[g].mean(0) for g in groups])
    expected = expected / expected.norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(avg.astype(np.float32), expected.numpy(), atol=2e-3)
    # single-concept classes equal their concept row
    np.testing.assert_allclose(avg[1], concept[3], atol=2e-3)


def test_resolve_computes_caches_and_reuses(isolated, clip_ckpt, monkeypatch):
    cfg = {'dataset': 'pascal', 'nclass': 21, 'data_root': str(isolated / 'voc'),
           'text_embedding_variant': 'single', 'mcc_text': 'concept4_single', 'pl_text': 'same'}
    monkeypatch.setenv(W.ENV_CLIP, str(clip_ckpt))
    text = T.resolve_text_embedding(cfg, 'text')
    mcc = T.resolve_text_embedding(cfg, 'mcc')
    assert text.dtype == torch.float32 and text.shape == (21, 32) and mcc.shape == (98, 32)
    cached = isolated / 'home' / '.cache' / 'semiseg' / 'text_embedding'
    assert sorted(p.name for p in cached.iterdir()) == ['voc12_wbg_concept4_single.npy',
                                                        'voc12_wbg_single.npy']
    assert torch.equal(text, torch.from_numpy(np.load(cached / 'voc12_wbg_single.npy')).float())
    assert torch.equal(T.resolve_text_embedding(cfg, 'pl'), text)  # 'same' -> text variant
    # second call reads the cache: works without any CLIP weights
    monkeypatch.setenv(W.ENV_CLIP, str(isolated / 'does_not_exist.pt'))
    assert torch.equal(T.resolve_text_embedding(cfg, 'text'), text)
    assert T.concept_groups(cfg, 'text') is None and len(T.concept_groups(cfg, 'mcc')) == 21


def test_search_order_and_explicit_path(isolated, monkeypatch):
    cfg = {'dataset': 'mytoy', 'nclass': 3, 'data_root': str(isolated / 'data'),
           'text_embedding_variant': 'single'}
    env_dir = isolated / 'env'
    arr_env = np.eye(3, 8, dtype=np.float16)
    T.save_embedding(arr_env, env_dir / 'mytoy_single.npy')
    monkeypatch.setenv(T.ENV_DIR, str(env_dir))
    assert torch.equal(T.resolve_text_embedding(cfg), torch.eye(3, 8))
    arr_root = np.eye(3, 8, k=1, dtype=np.float16)
    T.save_embedding(arr_root, isolated / 'data' / 'text_embedding' / 'mytoy_single.npy')
    assert torch.equal(T.resolve_text_embedding(cfg), torch.from_numpy(arr_root).float())  # data_root first
    explicit = T.save_embedding(np.eye(3, 8, k=2, dtype=np.float16), isolated / 'x.npy')
    cfg_explicit = dict(cfg, mcc_text=str(explicit))
    assert torch.equal(T.resolve_text_embedding(cfg_explicit, 'mcc'), torch.from_numpy(np.eye(3, 8, k=2)).float())


def test_row_count_mismatch_is_reported(isolated):
    cfg = {'dataset': 'pascal', 'nclass': 21, 'data_root': str(isolated / 'voc'),
           'text_embedding_variant': 'single'}
    T.save_embedding(np.ones((20, 8), np.float16), isolated / 'voc' / 'text_embedding' / 'voc12_wbg_single.npy')
    with pytest.raises(T.TextEmbeddingError, match='20 rows.*needs 21'):
        T.resolve_text_embedding(cfg)


def test_missing_weights_give_instructions(isolated, monkeypatch):
    monkeypatch.setenv(W.ENV_CLIP, str(isolated / 'nope.pt'))
    cfg = {'dataset': 'cityscapes', 'nclass': 19, 'data_root': str(isolated / 'cs'),
           'text_embedding_variant': 'single'}
    with pytest.raises(T.TextEmbeddingError) as err:
        T.resolve_text_embedding(cfg)
    msg = str(err.value)
    assert 'cityscapes_single.npy' in msg and 'semiseg.tools.text_embeddings' in msg


def test_custom_dataset_names_from_classes_txt(isolated, clip_ckpt, monkeypatch):
    root = isolated / 'custom'
    root.mkdir()
    (root / 'classes.txt').write_text('background\nwidget\ngadget\n')
    monkeypatch.setenv(W.ENV_CLIP, str(clip_ckpt))
    cfg = {'dataset': 'gizmo', 'nclass': 3, 'data_root': str(root), 'text_embedding_variant': 'single'}
    emb = T.resolve_text_embedding(cfg)
    assert emb.shape == (3, 32)
    assert (isolated / 'home' / '.cache' / 'semiseg' / 'text_embedding' / 'gizmo_single.npy').is_file()


def test_bad_variant_names():
    with pytest.raises(T.TextEmbeddingError, match='unknown text embedding variant'):
        T.parse_variant('multi')
    with pytest.raises(T.TextEmbeddingError, match='no class definitions concept7'):
        T.prompt_rows('pascal', 'concept7_single')


REAL_CLIP = os.environ.get('SEMISEG_CLIP_WEIGHTS')


@pytest.mark.skipif(not (REAL_CLIP and os.path.isfile(REAL_CLIP)),
                    reason='set SEMISEG_CLIP_WEIGHTS to the real OpenAI ViT-B-16.pt to compare with the release')
@pytest.mark.parametrize('dataset,variant', [('pascal', 'single'), ('cityscapes', 'concept3_single'),
                                             ('pascal', 'conceptavg4_single'), ('ade', 'single')])
def test_real_clip_reproduces_release_files(dataset, variant):
    ref = REF / T.embedding_filename(dataset, variant)
    if not ref.is_file():
        pytest.skip('reference text embeddings not available')
    model = T.load_clip_text_model(REAL_CLIP)
    ours = T.compute_text_embedding(dataset, variant, model).astype(np.float32)
    theirs = np.load(ref).astype(np.float32)
    assert ours.shape == theirs.shape
    assert (ours * theirs).sum(1).min() > 0.999


def test_dataset_registry_holds_the_class_definitions():
    from semiseg.data.datasets import DATASETS
    assert DATASETS['pascal'].concepts[4] == defs.PASCAL_CONCEPTS_4
    assert DATASETS['cityscapes'].concepts[3] == defs.CITYSCAPES_CONCEPTS_3
    assert T.text_prefix('pascal') == 'voc12_wbg' and T.text_prefix('mine') == 'mine'


def test_cli_writes_files(tmp_path, clip_ckpt, capsys):
    from semiseg.tools import text_embeddings as cli

    rc = cli.main(['--dataset', 'cityscapes', '--variant', 'single', 'conceptavg3_single',
                   '--clip', str(clip_ckpt), '--out', str(tmp_path)])
    assert rc == 0
    assert np.load(tmp_path / 'cityscapes_conceptavg3_single.npy').shape == (19, 32)
    assert np.load(tmp_path / 'cityscapes_single.npy').dtype == np.float16
    assert cli.main(['--dataset', 'cityscapes', '--variant', 'multi', '--out', str(tmp_path)]) == 2
    assert 'unknown text embedding variant' in capsys.readouterr().err
