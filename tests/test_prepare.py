"""Dataset preparation from miniature official archives (semiseg.data.prepare, semiseg.tools.prepare).

The archives are built here in the real formats (VOC tar, SBD tgz with GTcls .mat files, Cityscapes and
COCO and ADE zips); every converted mask is compared pixel by pixel with one computed here from the
test's own inputs, without the converters' code.
"""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from semiseg.data.prepare import ArchiveError, ade, cityscapes, coco, common, pascal, prepare_dataset
from semiseg.tools import prepare as prepare_tool
from semiseg.utils.imaging import voc_palette

RNG = np.random.default_rng(0)
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')   # pycocotools


def jpeg(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format='JPEG')
    return buf.getvalue()


def png(arr: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    img = Image.fromarray(arr.astype(np.uint8))
    if palette is not None:
        img.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format='PNG')
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = 'w') -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def labels_of(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob('*') if p.is_file() and p.name != '.prepare.lock'}


# ---------------------------------------------------------------- pascal

def sbd_mat(seg: np.ndarray) -> bytes:
    """An SBD cls/*.mat: struct GTcls with Boundaries (cell of sparse maps), Segmentation, CategoriesPresent."""
    boundaries = np.empty((20, 1), dtype=object)
    for i in range(20):
        boundaries[i, 0] = scipy.sparse.csc_matrix(seg == i + 1, dtype=float)
    present = np.unique(seg[seg > 0]).astype(np.uint8).reshape(-1, 1)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {'GTcls': {'Boundaries': boundaries, 'Segmentation': seg.astype(np.uint8),
                                     'CategoriesPresent': present}})
    return buf.getvalue()


@pytest.fixture
def voc_archives(tmp_path, monkeypatch):
    """VOC images a..d, VOC masks for a and b (with 255 borders), SBD masks for b, c, d."""
    sizes = {'2007_000001': (10, 12), '2007_000002': (9, 14), '2008_000003': (11, 8), '2008_000004': (7, 9)}
    jpgs = {k: jpeg(*s) for k, s in sizes.items()}
    voc_masks, sbd_segs = {}, {}
    for k in ('2007_000001', '2007_000002'):
        m = RNG.integers(0, 21, sizes[k]).astype(np.uint8)
        m[0, :] = 255
        voc_masks[k] = m
    for k in ('2007_000002', '2008_000003', '2008_000004'):
        sbd_segs[k] = RNG.integers(0, 21, sizes[k]).astype(np.uint8)
    voc = {f'VOCdevkit/VOC2012/JPEGImages/{k}.jpg': v for k, v in jpgs.items()}
    voc.update({f'VOCdevkit/VOC2012/SegmentationClass/{k}.png': png(v, voc_palette()) for k, v in voc_masks.items()})
    voc['VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt'] = b'2007_000001\n2007_000002\n'
    sbd = {f'benchmark_RELEASE/dataset/cls/{k}.mat': sbd_mat(v) for k, v in sbd_segs.items()}
    sbd['benchmark_RELEASE/dataset/train.txt'] = b'2007_000002\n'
    src = tmp_path / 'src'
    src.mkdir()
    write_tar(src / 'VOCtrainval_11-May-2012.tar', voc)
    write_tar(src / 'benchmark.tgz', sbd, 'w:gz')
    monkeypatch.setitem(pascal.OFFICIAL_COUNTS, 'JPEGImages', 4)
    monkeypatch.setitem(pascal.OFFICIAL_COUNTS, 'SegmentationClass', 2)
    monkeypatch.setitem(pascal.OFFICIAL_COUNTS, 'cls', 3)
    return src, jpgs, voc_masks, sbd_segs


def test_pascal_train_aug_masks_voc_first_and_rerun_does_nothing(voc_archives, tmp_path):
    src, jpgs, voc_masks, sbd_segs = voc_archives
    out, stats = prepare_dataset('pascal', [src], tmp_path / 'data', workers=2)
    assert out == tmp_path / 'data' / 'voc' and stats.written == 4 + 4 and not stats.failed
    for k, data in jpgs.items():
        assert (out / 'JPEGImages' / f'{k}.jpg').read_bytes() == data
    expected = {k: sbd_segs[k] for k in sbd_segs} | voc_masks     # VOC's own mask wins for 2007_000002
    assert sorted(p.stem for p in (out / 'SegmentationClass').iterdir()) == sorted(expected)
    for k, mask in expected.items():
        img = Image.open(out / 'SegmentationClass' / f'{k}.png')
        assert img.mode == 'P'
        assert np.array_equal(np.array(img.getpalette()).reshape(-1, 3)[:256], voc_palette())
        assert np.array_equal(np.array(img), mask), k
    before = mtimes(out)
    _, again = prepare_dataset('pascal', [src / 'VOCtrainval_11-May-2012.tar', src / 'benchmark.tgz'],
                               tmp_path / 'data', workers=1)
    assert (again.written, again.skipped) == (0, 8) and mtimes(out) == before


def test_pascal_resumes_a_missing_output_and_cleans_temporaries(voc_archives, tmp_path):
    src, _, _, sbd_segs = voc_archives
    out, _ = prepare_dataset('pascal', [src], tmp_path / 'data', workers=1)
    (out / 'SegmentationClass' / '2008_000003.png').unlink()
    (out / 'JPEGImages' / '.2007_000001.jpg.abc.tmp').write_bytes(b'x')
    _, stats = prepare_dataset('pascal', [src], tmp_path / 'data', workers=1)
    assert stats.written == 1 and not list(out.rglob('*.tmp'))
    assert np.array_equal(labels_of(out / 'SegmentationClass' / '2008_000003.png'), sbd_segs['2008_000003'])


def test_pascal_release_counts_and_wrong_files_are_one_line(voc_archives, tmp_path, monkeypatch, capsys):
    src, *_ = voc_archives
    monkeypatch.setitem(pascal.OFFICIAL_COUNTS, 'SegmentationClass', 2913)
    with pytest.raises(ArchiveError, match=r'VOCtrainval_11-May-2012.tar: 2 VOC2012 SegmentationClass.*2913'):
        prepare_dataset('pascal', [src], tmp_path / 'data')
    assert not (tmp_path / 'data').exists()      # nothing written
    monkeypatch.setitem(pascal.OFFICIAL_COUNTS, 'SegmentationClass', 2)
    wrong = tmp_path / 'wrong'
    wrong.mkdir()
    write_zip(wrong / 'benchmark.tgz', {'a.txt': b'x'})
    (wrong / 'VOCtrainval_11-May-2012.tar').symlink_to(src / 'VOCtrainval_11-May-2012.tar')
    assert prepare_tool.main(['pascal', '--from', str(wrong), '--data-root', str(tmp_path / 'd2')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'benchmark.tgz: not a tar archive (zip)' in err[0] and 'SBD' in err[0]


def test_truncated_tgz_names_the_archive(voc_archives, tmp_path):
    src, *_ = voc_archives
    data = (src / 'benchmark.tgz').read_bytes()
    (src / 'benchmark.tgz').write_bytes(data[:len(data) // 2])
    with pytest.raises(ArchiveError, match=r'benchmark.tgz: unreadable, truncated or corrupt .*SBD'):
        prepare_dataset('pascal', [src], tmp_path / 'data')


def test_space_check_stops_before_writing(voc_archives, tmp_path, monkeypatch, capsys):
    src, *_ = voc_archives
    monkeypatch.setattr(common.shutil, 'disk_usage', lambda path: SimpleNamespace(free=10))
    with pytest.raises(common.DataError, match=r'pascal needs about .* GB but the disk has'):
        prepare_dataset('pascal', [src], tmp_path / 'data')
    assert 'still to write' in capsys.readouterr().out and not (tmp_path / 'data').exists()


# ---------------------------------------------------------------- cityscapes

# the official Cityscapes label id -> train id table (cityscapesScripts labels.py), written out here
# independently of the converter; every other id is ignored (255)
CS_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def test_cityscapes_train_ids(tmp_path, monkeypatch):
    files = {('train', 'aachen', 'aachen_000000_000019'): (8, 16),
             ('val', 'frankfurt', 'frankfurt_000000_000294'): (6, 10)}
    images, labels, expected = {}, {}, {}
    for (split, city, stem), hw in files.items():
        images[f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png'] = png(RNG.integers(0, 256, (*hw, 3)))
        ids = RNG.integers(0, 34, hw).astype(np.uint8)
        ids[0, :4] = (0, 4, 29, 33)              # 0, 4 and 29 map to 255
        labels[f'gtFine/{split}/{city}/{stem}_gtFine_labelIds.png'] = png(ids)
        labels[f'gtFine/{split}/{city}/{stem}_gtFine_color.png'] = png(RNG.integers(0, 256, (*hw, 3)))
        expected[(split, city, stem)] = np.vectorize(lambda v: CS_TRAIN_IDS.get(int(v), 255))(ids)
    images['leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png'] = png(np.zeros((4, 4, 3)))
    images['README'] = b'readme'
    src = tmp_path / 'src'
    src.mkdir()
    write_zip(src / 'leftImg8bit_trainvaltest.zip', images)
    write_zip(src / 'gtFine_trainvaltest.zip', labels)
    monkeypatch.setattr(cityscapes, 'OFFICIAL_COUNTS', {'train': 1, 'val': 1})
    out, stats = prepare_dataset('cityscapes', [src], tmp_path / 'data', workers=1)
    assert stats.written == 4 and not (out / 'leftImg8bit' / 'test').exists()
    for (split, city, stem), mask in expected.items():
        got = labels_of(out / 'gtFine' / split / city / f'{stem}_gtFine_labelTrainIds.png')
        assert np.array_equal(got, mask)
        assert ((out / 'leftImg8bit' / split / city / f'{stem}_leftImg8bit.png').read_bytes()
                == images[f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png'])


# ---------------------------------------------------------------- coco

COCO_MISSING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}   # COCO 2017's 80 categories use ids 1..90 without these


def rle_counts(binary: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = binary.T.reshape(-1).astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts


def rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """A polygon along pixel edges: it covers columns x0..x1-1 and rows y0..y1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_coco_masks_classes_overlap_and_crowd(tmp_path, monkeypatch):
    cat_ids = [i for i in range(1, 91) if i not in COCO_MISSING_IDS]
    cats = [{'id': c, 'name': f'c{c}', 'supercategory': 's'} for c in cat_ids]
    h, w = 12, 16
    crowd = np.zeros((h, w), dtype=bool)
    crowd[8:12, 0:5] = True
    crowd[9, 6] = True
    train_anns = [   # the small box (toothbrush, 90) comes first in the json, the big one (person, 1) after
        {'id': 11, 'image_id': 139, 'category_id': 90, 'iscrowd': 0, 'segmentation': [rect(4, 2, 7, 5)]},
        {'id': 12, 'image_id': 139, 'category_id': 1, 'iscrowd': 0, 'segmentation': [rect(2, 1, 12, 8)]},
        {'id': 13, 'image_id': 139, 'category_id': 13, 'iscrowd': 1,
         'segmentation': {'counts': rle_counts(crowd), 'size': [h, w]}},
        {'id': 14, 'image_id': 139, 'category_id': 44, 'iscrowd': 0,   # two polygons, one instance
         'segmentation': [rect(13, 0, 16, 2), rect(14, 10, 16, 12)]},
    ]
    train = {'images': [{'id': 139, 'file_name': '000000000139.jpg', 'height': h, 'width': w},
                        {'id': 285, 'file_name': '000000000285.jpg', 'height': 5, 'width': 7}],
             'annotations': train_anns, 'categories': cats}
    val = {'images': [{'id': 632, 'file_name': '000000000632.jpg', 'height': 6, 'width': 6}],
           'annotations': [{'id': 21, 'image_id': 632, 'category_id': 90, 'iscrowd': 0,
                            'segmentation': [rect(1, 1, 3, 4)]}], 'categories': cats}
    src = tmp_path / 'src'
    src.mkdir()
    write_zip(src / 'train2017.zip', {'train2017/000000000139.jpg': jpeg(h, w),
                                      'train2017/000000000285.jpg': jpeg(5, 7)})
    write_zip(src / 'val2017.zip', {'val2017/000000000632.jpg': jpeg(6, 6)})
    write_zip(src / 'annotations_trainval2017.zip', {
        'annotations/instances_train2017.json': json.dumps(train).encode(),
        'annotations/instances_val2017.json': json.dumps(val).encode(),
        'annotations/captions_train2017.json': b'{}'})
    monkeypatch.setattr(coco, 'OFFICIAL_COUNTS', {'train2017': 2, 'val2017': 1})
    out, stats = prepare_dataset('coco', [src], tmp_path / 'data', workers=1)
    assert stats.written == 6 and not stats.failed

    # class ids: background 0, the 80 category ids in increasing order -> 1..80
    assert [cat_ids.index(c) + 1 for c in (1, 13, 44, 90)] == [1, 12, 40, 80]
    expected = np.zeros((h, w), dtype=np.uint8)
    expected[1:8, 2:12] = 1          # person, the largest instance, painted first
    expected[crowd] = 12             # crowd region (area 21) keeps its category
    expected[0:2, 13:16] = 40        # two polygons of one instance (area 10)
    expected[10:12, 14:16] = 40
    expected[2:5, 4:7] = 80          # the smallest on top
    assert np.array_equal(labels_of(out / 'masks' / '000000000139.png'), expected)
    assert np.array_equal(labels_of(out / 'masks' / '000000000285.png'), np.zeros((5, 7), np.uint8))
    val_expected = np.zeros((6, 6), np.uint8)
    val_expected[1:4, 1:3] = 80
    assert np.array_equal(labels_of(out / 'masks' / '000000000632.png'), val_expected)
    assert (out / 'val2017' / '000000000632.jpg').is_file() and (out / 'train2017' / '000000000285.jpg').is_file()


# ---------------------------------------------------------------- ade

@pytest.fixture
def ade_zip(tmp_path, monkeypatch):
    members, annotations = {'ADEChallengeData2016/objectInfo150.txt': b'Idx\n'}, {}
    for split, name, hw in (('training', 'ADE_train_00000001', (9, 7)), ('training', 'ADE_train_00000002', (5, 6)),
                            ('validation', 'ADE_val_00000001', (6, 8))):
        ann = RNG.integers(0, 151, hw).astype(np.uint8)
        ann[0, :3] = (0, 1, 150)
        members[f'ADEChallengeData2016/images/{split}/{name}.jpg'] = jpeg(*hw)
        members[f'ADEChallengeData2016/annotations/{split}/{name}.png'] = png(ann)
        annotations[(split, name)] = ann
    src = tmp_path / 'src'
    src.mkdir()
    monkeypatch.setattr(ade, 'OFFICIAL_COUNTS', {'training': 2, 'validation': 1})
    return write_zip(src / 'ADEChallengeData2016.zip', members), members, annotations


def test_ade_semivl_keeps_labels_unimatch_v2_shifts(ade_zip, tmp_path):
    archive, members, annotations = ade_zip
    out, _ = prepare_dataset('ade', [archive], tmp_path / 'data', workers=1)
    out2, _ = prepare_dataset('ade20k', [archive], tmp_path / 'data', workers=1)
    assert (out.name, out2.name) == ('ADEChallengeData2016', 'ade20k')
    for (split, name), ann in annotations.items():
        rel = f'annotations/{split}/{name}.png'
        assert (out / rel).read_bytes() == members[f'ADEChallengeData2016/{rel}']      # unchanged: 0..150
        shifted = np.where(ann == 0, 255, ann.astype(int) - 1)                         # 0 -> 255, k -> k-1
        assert np.array_equal(labels_of(out2 / rel), shifted)
        image = f'images/{split}/{name}.jpg'
        assert (out2 / image).read_bytes() == members[f'ADEChallengeData2016/{image}']


def test_truncated_zip_is_one_line(ade_zip, tmp_path, capsys):
    archive, *_ = ade_zip
    data = archive.read_bytes()
    archive.write_bytes(data[:len(data) * 2 // 3])
    assert prepare_tool.main(['ade', '--from', str(archive), '--data-root', str(tmp_path / 'data')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'ADEChallengeData2016.zip' in err[0]
    assert 'ADE20K SceneParsing' in err[0] and not (tmp_path / 'data').exists()


# ---------------------------------------------------------------- verify

def test_verify_reports_missing_file_wrong_size_and_bad_id(tmp_path, capsys):
    root = tmp_path / 'mine'
    (root / 'img').mkdir(parents=True)
    (root / 'ann').mkdir()
    (root / 'classes.txt').write_text('bg\nthing\nstuff\n')
    lines = []
    for i in range(4):
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / 'img' / f'{i}.jpg')
        mask = np.full((6, 8), i % 3, np.uint8)
        mask[0, 0] = 255
        Image.fromarray(mask).save(root / 'ann' / f'{i}.png')
        lines.append(f'img/{i}.jpg ann/{i}.png')
    (root / 'splits' / '2').mkdir(parents=True)
    (root / 'splits' / '2' / 'labeled.txt').write_text('\n'.join(lines[:2]) + '\n')
    (root / 'splits' / '2' / 'unlabeled.txt').write_text('\n'.join(lines[2:]) + '\n')
    (root / 'splits' / 'val.txt').write_text(lines[3] + '\n')
    argv = ['mine', '--verify', '--data-root', str(root), '--workers', '1']
    assert prepare_tool.main(argv) == 0
    assert 'splits/2/labeled.txt: 2/2 entries complete' in capsys.readouterr().out

    (root / 'img' / '0.jpg').unlink()                                                # missing
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(root / 'ann' / '2.png')         # wrong size
    Image.fromarray(np.full((6, 8), 3, np.uint8)).save(root / 'ann' / '3.png')       # id 3 of 3 classes
    assert prepare_tool.main(argv[:-1] + ['2']) == 1
    out = capsys.readouterr().out
    assert 'missing image img/0.jpg' in out
    assert 'mask ann/2.png is 8x5, its image img/2.jpg 8x6' in out
    assert 'mask ann/3.png holds invalid label ids [3]' in out
    assert 'splits/2/labeled.txt: 1/2 entries complete' in out
    assert 'splits/2/unlabeled.txt: 0/2 entries complete' in out
    assert '3 problem(s): 1 missing images, 1 masks of another size, 1 masks with invalid ids' in out


def test_verify_checks_official_counts_and_raw_ade_ids(ade_zip, tmp_path, capsys):
    archive, *_ = ade_zip
    out, _ = prepare_dataset('ade', [archive], tmp_path / 'data', workers=1)
    (out / 'splits').mkdir()
    (out / 'splits' / 'val.txt').write_text(
        'images/validation/ADE_val_00000001.jpg annotations/validation/ADE_val_00000001.png\n')
    assert prepare_tool.main(['ade', '--verify', '--data-root', str(tmp_path / 'data')]) == 1
    text = capsys.readouterr().out
    assert 'splits/val.txt: 1/1 entries complete (official 2000)' in text     # ids 0..150 are valid for ade
    assert 'splits/val.txt has 1 entries, the official list 2000' in text


def test_another_release_is_named_before_writing(tmp_path, capsys):
    src = tmp_path / 'src'
    src.mkdir()
    write_zip(src / 'ADEChallengeData2016.zip', {'ADE20K_2021_17_01/images/ADE/training/a.jpg': jpeg(4, 4)})
    assert prepare_tool.main(['ade20k', '--from', str(src), '--data-root', str(tmp_path / 'data')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'ADEChallengeData2016.zip: no images/training/*.jpg in it' in err[0]
    assert not (tmp_path / 'data').exists()
