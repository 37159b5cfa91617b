"""Bad data gets a DataError naming the file and the fix; dataset metadata is consistent."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semiseg.data import DATASETS, DataError, dataset_info
from semiseg.data.build import build_datasets as build_data
from semiseg.data.splits import read_split
from semiseg.methods.registry import METHODS
from semiseg.utils.imaging import colorize, voc_palette


def build_datasets(cfg: dict):
    data = build_data(cfg, METHODS['unimatch'])
    return data.labeled, data.unlabeled, data.val


def _write_sample(root: Path, name: str, size=(40, 30), mask_size=None, mask_mode='L'):
    w, h = size
    (root / 'img').mkdir(parents=True, exist_ok=True)
    (root / 'gt').mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(root / 'img' / f'{name}.jpg')
    mw, mh = mask_size or size
    mask = Image.fromarray(np.ones((mh, mw), np.uint8))
    mask.convert(mask_mode).save(root / 'gt' / f'{name}.png')
    return f'img/{name}.jpg gt/{name}.png'


def _dataset(root: Path, lines=None, val_lines=None, classes=('a', 'b')) -> dict:
    """A custom dataset with 2 labeled / 3 unlabeled / 2 val samples (val: v0, v1); returns its config."""
    lines = lines or [_write_sample(root, f's{i}') for i in range(5)]
    val_lines = val_lines or [_write_sample(root, f'v{i}') for i in range(2)]
    (root / 'splits' / 'x').mkdir(parents=True, exist_ok=True)
    (root / 'splits' / 'x' / 'labeled.txt').write_text('\n'.join(lines[:2]) + '\n')
    (root / 'splits' / 'x' / 'unlabeled.txt').write_text('\n'.join(lines[2:]) + '\n')
    (root / 'splits' / 'val.txt').write_text('\n'.join(val_lines) + '\n')
    (root / 'classes.txt').write_text('\n'.join(classes) + '\n')
    return dict(dataset='mine', data_root=str(root), nclass=len(classes), split='x',
                img_scale=None, scale_ratio_range=(0.5, 2.0), crop_size=32)


def test_valid_custom_dataset_builds(tmp_path):
    train_l, train_u, val = build_datasets(_dataset(tmp_path))
    assert (len(train_l), len(train_u), len(val)) == (3, 3, 2)
    img, mask, name = val[0].values()
    assert img.shape == (3, 30, 40) and mask.shape == (30, 40) and name == 'img/v0.jpg'


def test_missing_split_file_says_how_to_fetch(tmp_path):
    cfg = dict(dataset='pascal', data_root=str(tmp_path / 'voc'), nclass=21, split='92',
               img_scale=[2048, 512], crop_size=512)
    with pytest.raises(DataError, match='not found.*semiseg.tools.fetch_splits pascal') as err:
        build_datasets(cfg)
    assert str(tmp_path / 'voc' / 'splits' / '92' / 'labeled.txt') in str(err.value)
    assert f'--data-root {tmp_path}' in str(err.value)


def test_malformed_split_line_names_file_and_line(tmp_path):
    f = tmp_path / 'l.txt'
    f.write_text('a.jpg a.png\n\nb.jpg\n')
    with pytest.raises(DataError, match=r'l\.txt:3: expected two paths'):
        read_split(f)
    f.write_text('a.jpg a.png extra.png\n')
    with pytest.raises(DataError, match=r'l\.txt:1: expected two paths'):
        read_split(f)


@pytest.mark.parametrize('line', ['../other/a.jpg gt/a.png', 'img/a.jpg /etc/a.png',
                                  'img/../../a.jpg gt/a.png'])
def test_path_escaping_root_rejected(tmp_path, line):
    f = tmp_path / 'l.txt'
    f.write_text(f'img/ok.jpg gt/ok.png\n{line}\n')
    with pytest.raises(DataError, match=r'l\.txt:2: path .* escapes the data root'):
        read_split(f)


def test_inner_dotdot_that_stays_inside_is_fine(tmp_path):
    f = tmp_path / 'l.txt'
    f.write_text('img/sub/../a.jpg gt/a.png\n')
    assert read_split(f)[0].image == 'img/sub/../a.jpg'


def test_missing_image_caught_at_construction(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(5)]
    (tmp_path / 'img' / 's2.jpg').unlink()       # first unlabeled entry
    with pytest.raises(DataError,
                       match=r'image .*s2\.jpg not found \(listed at .*unlabeled\.txt:1\)'):
        build_datasets(_dataset(tmp_path, lines))


def test_missing_mask_later_in_list_caught_lazily(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(8)]
    (tmp_path / 'gt' / 's7.png').unlink()        # 6th unlabeled entry: beyond the up-front check
    _, train_u, _ = build_datasets(_dataset(tmp_path, lines))
    with pytest.raises(DataError, match=r'mask .*s7\.png not found'):
        train_u[5]


def test_unreadable_image(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(5)]
    (tmp_path / 'img' / 's3.jpg').write_bytes(b'this is not a jpeg')
    _, train_u, _ = build_datasets(_dataset(tmp_path, lines))
    with pytest.raises(DataError, match=r'cannot read image .*s3\.jpg'):
        train_u[1]


def test_mask_size_mismatch(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(4)]
    lines.append(_write_sample(tmp_path, 'bad', size=(40, 30), mask_size=(41, 30)))
    _, train_u, _ = build_datasets(_dataset(tmp_path, lines))
    with pytest.raises(DataError, match=r'mask .*bad\.png is 41x30 but image .*bad\.jpg is 40x30'):
        train_u[2]


def test_colour_mask_rejected(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(4)]
    lines.append(_write_sample(tmp_path, 'rgb', mask_mode='RGB'))
    _, train_u, _ = build_datasets(_dataset(tmp_path, lines))
    with pytest.raises(DataError, match="mode 'RGB'"):
        train_u[2]


def test_nclass_mismatch(tmp_path):
    cfg = _dataset(tmp_path)
    cfg['nclass'] = 3
    with pytest.raises(DataError, match='nclass=3.*2 classes'):
        build_datasets(cfg)


def test_custom_dataset_needs_classes_txt(tmp_path):
    with pytest.raises(DataError, match='classes.txt'):
        dataset_info('mine', tmp_path)


def test_custom_palette(tmp_path):
    (tmp_path / 'classes.txt').write_text('sky\nsea\n')
    (tmp_path / 'palette.txt').write_text('0 0 255\n0, 128, 0\n')
    info = dataset_info('mine', tmp_path)
    assert info.class_names == ('sky', 'sea') and info.nclass == 2
    assert info.palette[1].tolist() == [0, 128, 0]
    (tmp_path / 'palette.txt').write_text('0 0 255\n0 300 0\n')
    with pytest.raises(DataError, match=r'palette\.txt:2'):
        dataset_info('mine', tmp_path)


def test_builtin_dataset_infos():
    assert {k: (v.folder, v.nclass, v.reduce_zero_label) for k, v in DATASETS.items()} == {
        'pascal': ('voc', 21, False), 'cityscapes': ('cityscapes', 19, False),
        'coco': ('coco', 81, False), 'ade': ('ADEChallengeData2016', 150, True),
        'ade20k': ('ade20k', 150, False), 'toy': ('toy', 5, False)}
    pal = voc_palette()
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0]
    assert pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]
    assert colorize(np.array([[1, 255]]), pal).tolist() == [[[128, 0, 0], [224, 224, 192]]]
    for info in DATASETS.values():
        assert info.palette.shape == (256, 3) and info.palette.dtype == np.uint8
        assert len({tuple(c) for c in info.palette[:info.nclass]}) == info.nclass


def test_class_names_match_mmseg():
    datasets = pytest.importorskip('mmseg.datasets')
    assert DATASETS['pascal'].class_names == datasets.PascalVOCDataset.METAINFO['classes']
    assert DATASETS['cityscapes'].class_names == datasets.CityscapesDataset.METAINFO['classes']
    ade = tuple(c.strip() for c in datasets.ADE20KDataset.METAINFO['classes'])
    assert DATASETS['ade'].class_names == ade


def test_missing_split_hint_for_other_folder_name(tmp_path):
    cfg = dict(dataset='pascal', data_root=str(tmp_path / 'VOC2012'), nclass=21, split='92',
               img_scale=[2048, 512], crop_size=512)
    with pytest.raises(DataError, match=f'--splits-dir {tmp_path / "VOC2012" / "splits"}'):
        build_datasets(cfg)


def test_label_ids_outside_the_classes_name_the_file(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(5)]
    bad = np.ones((30, 40), np.uint8)
    bad[0, :3] = (7, 9, 255)
    Image.fromarray(bad).save(tmp_path / 'gt' / 's0.png')          # a labeled mask
    train_l, train_u, val = build_datasets(_dataset(tmp_path, lines))
    Image.fromarray(bad).save(tmp_path / 'gt' / 'v0.png')          # a val mask
    for dataset, name in ((train_l, 's0'), (val, 'v0')):
        with pytest.raises(DataError, match=rf'mask .*{name}\.png .* holds label ids 7, 9, outside 0\.\.1 and 255'):
            dataset[0]
    Image.fromarray(bad).save(tmp_path / 'gt' / 's2.png')          # an unlabeled one: ids are not read
    assert train_u[0]['img_w'].shape == (3, 32, 32)


def test_duplicate_class_names_are_refused(tmp_path):
    (tmp_path / 'classes.txt').write_text('road\ncar\nroad\n')
    with pytest.raises(DataError, match=r"classes\.txt:3: class 'road' is listed twice \(first on line 1\)"):
        dataset_info('mine', tmp_path)


# ---------------------------------------------------------------- text files as editors write them
@pytest.mark.parametrize('encode', [
    lambda t: t.encode(), lambda t: b'\xef\xbb\xbf' + t.encode(),
    lambda t: t.replace('\n', '\r\n').encode(), lambda t: b'\xef\xbb\xbf' + t.replace('\n', '\r').encode()],
    ids=['utf8', 'bom', 'crlf', 'bom-cr'])
def test_bom_and_line_endings_read_the_same(tmp_path, encode):
    cfg = _dataset(tmp_path)
    for rel in ('classes.txt', 'splits/x/labeled.txt', 'splits/x/unlabeled.txt', 'splits/val.txt'):
        path = tmp_path / rel
        path.write_bytes(encode(path.read_text()))
    (tmp_path / 'palette.txt').write_bytes(encode('0 0 255\n0 128 0\n'))
    info = dataset_info('mine', tmp_path)
    assert info.class_names == ('a', 'b') and info.palette[1].tolist() == [0, 128, 0]
    train_l, train_u, val = build_datasets(cfg)
    assert [e.image for e in train_l.entries[:2]] == ['img/s0.jpg', 'img/s1.jpg']
    assert list(val[0].values())[2] == 'img/v0.jpg' and len(train_u) == 3


@pytest.mark.parametrize('data, line', [('a\nb\xe9\n'.encode('latin-1'), 2),
                                        ('a\r\nb\r\nc\xff'.encode('latin-1'), 3)])
def test_other_encodings_are_refused_with_file_and_line(tmp_path, data, line):
    (tmp_path / 'classes.txt').write_bytes(data)
    with pytest.raises(DataError, match=rf'class list .*classes\.txt line {line} is not UTF-8'):
        dataset_info('mine', tmp_path)


def test_utf16_split_list_is_refused(tmp_path):
    cfg = _dataset(tmp_path)
    path = tmp_path / 'splits' / 'val.txt'
    path.write_bytes(path.read_text().encode('utf-16'))
    with pytest.raises(DataError, match=r'split list .*val\.txt is UTF-16 text; save it as UTF-8'):
        build_datasets(cfg)


def test_class_counts_that_reach_the_reserved_ids_are_refused(tmp_path):
    (tmp_path / 'classes.txt').write_text(''.join(f'c{i}\n' for i in range(254)))
    assert dataset_info('mine', tmp_path).nclass == 254          # ids 0..253
    (tmp_path / 'classes.txt').write_text(''.join(f'c{i}\n' for i in range(255)))
    with pytest.raises(DataError, match='255 classes; at most 254 .*254 and 255 are reserved'):
        dataset_info('mine', tmp_path)


# ---------------------------------------------------------------- overlapping lists
def test_labeled_image_in_validation_is_refused(tmp_path):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(5)]
    cfg = _dataset(tmp_path, lines, val_lines=[_write_sample(tmp_path, 'v0'), lines[1]])
    with pytest.raises(DataError, match=r'1 image\(s\) are both labeled and validation images, e\.g\. img/s1\.jpg '
                                        r'\(.*labeled\.txt:2 and .*val\.txt:2\)'):
        build_datasets(cfg)


def test_labeled_image_in_unlabeled_is_counted_and_warned(tmp_path, caplog):
    lines = [_write_sample(tmp_path, f's{i}') for i in range(5)]
    cfg = _dataset(tmp_path, lines + [lines[0]])                  # s0 labeled and unlabeled
    with caplog.at_level('WARNING'):
        _, train_u, _ = build_datasets(cfg)
    assert len(train_u) == 4
    assert '1 labeled image(s) are also in the unlabeled list, e.g. img/s0.jpg' in caplog.text
    assert 'labeled.txt:1' in caplog.text and 'unlabeled.txt:4' in caplog.text


def test_official_split_lists_have_no_overlap():
    from semiseg.data.splits import check_overlaps
    from tests.conftest import require_reference
    root = require_reference('splits') / 'splits'
    checked = 0
    for val_file in sorted(root.glob('*/val.txt')):
        val = read_split(val_file)
        for labeled_file in sorted(val_file.parent.glob('*/labeled.txt')):
            unlabeled_file = labeled_file.parent / 'unlabeled.txt'
            has_unlabeled = unlabeled_file.is_file() and unlabeled_file.stat().st_size > 0
            unlabeled = read_split(unlabeled_file) if has_unlabeled else None
            assert check_overlaps(read_split(labeled_file), val, unlabeled) == 0, labeled_file
            checked += 1
    assert checked >= 20
