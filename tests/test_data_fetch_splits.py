"""fetch_splits: copy/verify official split lists, reject tampered files, checksum table facts."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from semiseg.data import DataError
from semiseg.tools import fetch_splits as fs
from third_party import splits as official

REFERENCE = Path(__file__).resolve().parents[1].parent / 'shared' / 'reference' / 'splits'
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(),
                                     reason='../shared/reference/splits not available')


@pytest.fixture
def fake_official(tmp_path, monkeypatch):
    """A self-contained 'official' pascal list set with its own checksum table."""
    src = tmp_path / 'src'
    files = {'92/labeled.txt': 'JPEGImages/a.jpg SegmentationClass/a.png\n',
             '92/unlabeled.txt': 'JPEGImages/b.jpg SegmentationClass/b.png\n',
             'val.txt': 'JPEGImages/c.jpg SegmentationClass/c.png\n'}
    table = {}
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
        table[rel] = {'sha256': hashlib.sha256(text.encode()).hexdigest(), 'lines': 1}
    monkeypatch.setattr(official, 'load_checksums', lambda: {'pascal': table})
    return src


def test_copy_and_verify(fake_official, tmp_path):
    dest = fs.fetch_splits('pascal', tmp_path / 'data', fake_official)
    assert dest == tmp_path / 'data' / 'voc' / 'splits'
    assert (dest / '92' / 'labeled.txt').read_text().startswith('JPEGImages/a.jpg')
    assert (dest / 'val.txt').is_file()
    fs.fetch_splits('pascal', tmp_path / 'data', fake_official)      # idempotent


def test_tampered_file_rejected_and_nothing_written(fake_official, tmp_path):
    (fake_official / '92' / 'unlabeled.txt').write_text('JPEGImages/evil.jpg x.png\n')
    with pytest.raises(DataError, match=r'checksum mismatch for .*unlabeled\.txt.*nothing was '
                                        r'written'):
        fs.fetch_splits('pascal', tmp_path / 'data', fake_official)
    assert not (tmp_path / 'data').exists()
    assert fs.main(['pascal', '--data-root', str(tmp_path / 'data'),
                    '--from', str(fake_official)]) == 1


def test_existing_different_file_needs_force(fake_official, tmp_path):
    target = tmp_path / 'data' / 'voc' / 'splits' / 'val.txt'
    target.parent.mkdir(parents=True)
    target.write_text('my own list\n')
    with pytest.raises(DataError, match='--force'):
        fs.fetch_splits('pascal', tmp_path / 'data', fake_official)
    fs.fetch_splits('pascal', tmp_path / 'data', fake_official, force=True)
    assert target.read_text().startswith('JPEGImages/c.jpg')


def test_missing_source_file_and_unknown_dataset(fake_official, tmp_path):
    (fake_official / 'val.txt').unlink()
    with pytest.raises(DataError, match='missing val.txt'):
        fs.fetch_splits('pascal', tmp_path / 'data', fake_official)
    with pytest.raises(DataError, match='no official split lists'):
        fs.fetch_splits('mine', tmp_path / 'data', fake_official)


def test_checksum_table_matches_published_split_sizes():
    table = official.load_checksums()
    lines = {d: {rel: e['lines'] for rel, e in files.items()} for d, files in table.items()}
    assert sum(len(v) for v in table.values()) == 40
    assert lines['pascal']['92/labeled.txt'] == 92 and lines['pascal']['92/unlabeled.txt'] == 10490
    assert lines['pascal']['val.txt'] == 1449
    assert lines['cityscapes']['1_30/labeled.txt'] == 100 and lines['cityscapes']['val.txt'] == 500
    assert lines['ade']['1_128/labeled.txt'] == 158 and lines['ade']['1_128/unlabeled.txt'] == 20052
    assert lines['coco']['1_512/labeled.txt'] == 232 and lines['coco']['val.txt'] == 5000
    coco = official.expected_files('coco')
    assert coco['1_512/unlabeled.txt'] is None                   # absent from the reference
    assert official.url('ade', 'val.txt').endswith('google-research/semivl/main/splits/ade/val.txt')
    assert official.UNIMATCH_COMMIT in official.url('pascal', '92/labeled.txt')


@needs_reference
@pytest.mark.parametrize('dataset', ['pascal', 'coco'])
def test_fetch_from_reference(tmp_path, dataset):
    dest = fs.fetch_splits(dataset, tmp_path, REFERENCE / dataset)
    for rel, sha in official.expected_files(dataset).items():
        if sha is not None:
            assert hashlib.sha256((dest / rel).read_bytes()).hexdigest() == sha
    assert not (dest / '1_512' / 'unlabeled.txt').exists()     # coco: unverified, skipped


@needs_reference
def test_tampered_reference_copy_rejected(tmp_path):
    src = tmp_path / 'cityscapes'
    shutil.copytree(REFERENCE / 'cityscapes', src)
    with (src / '1_16' / 'labeled.txt').open('a') as f:
        f.write('leftImg8bit/train/x.png gtFine/train/x.png\n')
    with pytest.raises(DataError, match='checksum mismatch'):
        fs.fetch_splits('cityscapes', tmp_path / 'data', src)
    assert not (tmp_path / 'data').exists()


@needs_reference
def test_checksum_table_up_to_date():
    assert official.compute_checksums(REFERENCE) == json.loads(official.CHECKSUM_FILE.read_text())


def test_splits_dir_option(fake_official, tmp_path):
    dest = tmp_path / 'VOC2012' / 'splits'
    assert fs.main(['pascal', '--splits-dir', str(dest), '--from', str(fake_official)]) == 0
    assert (dest / '92' / 'labeled.txt').is_file()


def test_release_specific_lists_come_from_their_release():
    from third_party import splits as official
    assert official.url('pascal', '1_2/labeled.txt').startswith('https://raw.githubusercontent.com/xmed-lab/AllSpark/')
    assert '/LiheYoung/UniMatch/' in official.url('pascal', '1_16/unlabeled.txt')
    assert '/LiheYoung/UniMatch-V2/' in official.url('ade20k', '1_64/labeled.txt')
    files = official.expected_files('ade20k')
    assert files['val.txt'] is None and '1_2/unlabeled.txt' in files     # fetched unverified
