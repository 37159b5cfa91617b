"""`python -m semiseg.tools.predict` with a random-init exp-0 checkpoint on generated images.

The PNGs it writes are read back and compared with `semiseg.api.predict` on the same inputs; bad
images are reported and skipped (exit 1); unusable arguments write nothing (exit 2).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.api import build_model, predict
from semiseg.data.datasets import DATASETS
from semiseg.data.toy import ensure_toy_dataset
from semiseg.data.transforms import normalize
from semiseg.experiments import get_runs, write_config
from semiseg.tools import predict as tool
from semiseg.tools.predict_outputs import overlay_image

torch.set_num_threads(1)

SIZES = {'a.png': (40, 30), 'b.png': (53, 37), 'c.jpg': (64, 64), 'd.png': (40, 30)}   # (width, height)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The toy data root (its text embedding), a random-init exp-0 run-0 checkpoint and an image folder."""
    toy = ensure_toy_dataset(Path(tempfile.gettempdir()) / 'semiseg-test-cache' / 'toy')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('SEMISEG_DATA', str(toy.parent))
        torch.manual_seed(0)
        model = build_model(0, 0, pretrained=False).eval()
        cfg = get_runs(0)[0]
        tmp = tmp_path_factory.mktemp('predict')
        ckpt = tmp / 'latest.pth'
        torch.save({'model': model.state_dict(), 'iteration': 0}, ckpt)
        images = tmp / 'images'
        images.mkdir()
        rng = np.random.default_rng(0)
        for name, (w, h) in SIZES.items():
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            if name == 'd.png':      # a palette image: converted to RGB like any other
                Image.fromarray(pixels).convert('P').save(images / name)
            else:
                Image.fromarray(pixels).save(images / name)
        (images / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really a png' * 4)
        Image.fromarray(rng.integers(0, 65535, (20, 24), dtype=np.uint16)).save(images / 'grey16.png')
        (images / 'notes.json').write_text('{}')       # not an image suffix: ignored in folders
        yield {'model': model, 'cfg': cfg, 'ckpt': ckpt, 'images': images, 'tmp': tmp}


def _reference(model, cfg, path):
    """What `semiseg.api.predict` gives for one image, prepared as a validation image."""
    x = normalize(Image.open(path).convert('RGB'))[None]
    return predict(model, x, cfg['eval_mode'], cfg['crop_size'])[0]


def _run(setup, *extra, out='out'):
    out_dir = setup['tmp'] / out
    args = ['--exp', '0', '--run', '0', '--checkpoint', str(setup['ckpt']), '--out', str(out_dir),
            '--device', 'cpu', *extra]
    return tool.main(args), out_dir


def test_folder_predictions_match_the_api(setup, capsys):
    rc, out = _run(setup, '--overlay', '--logits', str(setup['images']))
    assert rc == 1
    err = capsys.readouterr().err
    assert 'broken.png: cannot read it as an image' in err
    assert 'grey16.png: mode I;16' in err
    assert '2 image(s) failed:' in err and 'notes.json' not in err
    palette = DATASETS['toy'].palette
    for name, (w, h) in SIZES.items():
        stem = Path(name).stem
        png = Image.open(out / f'{stem}.png')
        assert png.mode == 'P' and png.size == (w, h)
        assert png.getpalette()[:15] == palette[:5].reshape(-1).tolist()
        scores = _reference(setup['model'], setup['cfg'], setup['images'] / name)
        assert np.array_equal(np.asarray(png), scores.argmax(0).numpy().astype(np.uint8)), name
        saved = np.load(out / f'{stem}.npy')
        assert saved.dtype == np.float16 and saved.shape == (5, h, w)
        np.testing.assert_allclose(saved.astype(np.float32), scores.numpy(), atol=2e-3, rtol=1e-3)
        overlay = Image.open(out / f'{stem}_overlay.png')
        assert overlay.mode == 'RGB' and overlay.width > w and overlay.height >= h
    assert sorted(p.name for p in out.glob('*.png') if 'overlay' not in p.name) == \
        ['a.png', 'b.png', 'c.png', 'd.png']


def test_batches_list_file_and_config(setup, capsys):
    """Equal-sized images batched together, inputs from a list file, the run named by its config.yaml."""
    listing = setup['tmp'] / 'list.txt'
    listing.write_text('# two images of one size\nimages/a.png\n\nimages/d.png\n' + str(setup['images'] / 'b.png'))
    cfg_file = setup['tmp'] / 'run' / 'config.yaml'
    write_config(setup['cfg'], cfg_file)
    out = setup['tmp'] / 'out_batched'
    rc = tool.main(['--config', str(cfg_file), '--checkpoint', str(setup['ckpt']), '--out', str(out),
                    '--device', 'cpu', '--batch-size', '2', str(listing)])
    assert rc == 0, capsys.readouterr().err
    for name in ('a.png', 'd.png', 'b.png'):
        ref = _reference(setup['model'], setup['cfg'], setup['images'] / name).argmax(0).numpy()
        assert (np.asarray(Image.open(out / name)) == ref).mean() > 0.99


def test_resized_inputs_and_center_crop_come_back_at_input_size(setup, capsys):
    """A run with img_scale predicts on the resized image (as its val set) and resizes the scores back;
    center_crop labels only its central crop (255 elsewhere); bf16 autocast runs."""
    big = setup['tmp'] / 'big.png'
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(big)
    cfg_file = setup['tmp'] / 'scaled' / 'config.yaml'
    write_config({**setup['cfg'], 'img_scale': [96, 64]}, cfg_file)   # val_resize: short side 512
    out = setup['tmp'] / 'out_scaled'
    base = ['--config', str(cfg_file), '--checkpoint', str(setup['ckpt']), '--device', 'cpu', str(big)]
    assert tool.main(base + ['--out', str(out), '--mode', 'zegclip_sliding_window', '--stride', '64']) == 0
    from semiseg.data.transforms import val_resize
    x = normalize(val_resize(Image.open(big).convert('RGB'), (96, 64)))[None]
    assert x.shape[-2:] == (512, 658)
    ref = predict(setup['model'], x, 'zegclip_sliding_window', 64, stride=64, out_size=(70, 90))
    assert np.array_equal(np.asarray(Image.open(out / 'big.png')), ref[0].argmax(0).numpy())
    # center_crop of the resized image: its 64x64 centre maps back to about rows 31-39, cols 41-49
    assert tool.main(base + ['--out', str(out), '--mode', 'center_crop']) == 0
    labels = np.asarray(Image.open(out / 'big.png'))
    assert labels.shape == (70, 90) and (labels[32:38, 42:48] < 5).all()
    assert (labels[:28] == 255).all() and (labels[:, :38] == 255).all() and (labels[42:] == 255).all()
    out = setup['tmp'] / 'out_crop'
    assert tool.main(base[2:] + ['--exp', '0', '--run', '0', '--out', str(out), '--mode', 'center_crop',
                                 '--precision', 'bf16', '--logits']) == 0
    labels = np.asarray(Image.open(out / 'big.png'))
    assert labels.shape == (70, 90)
    inside = np.zeros((70, 90), dtype=bool)
    inside[3:67, 13:77] = True
    assert (labels[~inside] == 255).all() and (labels[inside] < 5).all()
    assert np.isnan(np.load(out / 'big.npy')[:, ~inside]).all()


def test_overlay_legend_names_the_classes_shown():
    img = Image.new('RGB', (8, 6), (10, 20, 30))
    labels = np.zeros((6, 8), dtype=np.uint8)
    labels[:, 4:] = 2
    labels[0, 0] = 255
    out = overlay_image(img, labels, DATASETS['toy'].palette, DATASETS['toy'].class_names)
    arr = np.asarray(out)
    assert out.height >= 6 and out.width > 8
    assert tuple(arr[0, 0]) == (10, 20, 30)                  # ignore: the image shows through
    colour = DATASETS['toy'].palette[2].astype(float)
    assert np.abs(arr[3, 6] - (0.5 * np.array([10, 20, 30]) + 0.5 * colour)).max() <= 1
    legend = arr[:, 8:]
    assert (legend == DATASETS['toy'].palette[2]).all(axis=-1).any()   # a swatch of the class shown


CASES = {   # case: (arguments replacing the defaults, the message part)
    'empty_folder': ({'inputs': ['{tmp}/empty']}, 'holds no images'),
    'missing_checkpoint': ({'--checkpoint': '{tmp}/nope.pth'}, 'nope.pth does not exist'),
    'other_model': ({'--checkpoint': '{tmp}/other.pth'}, 'does not fit'),
    'unknown_exp': ({'--exp': '999'}, 'unknown experiment 999'),
    'unknown_run': ({'--run': '9'}, 'has runs 0..'),
    'missing_list': ({'inputs': ['{tmp}/missing.txt']}, 'missing.txt not found'),
    'collision': ({'inputs': ['{tmp}/images/a.png', '{tmp}/images/a.png', '{tmp}/dup/a.png']}, 'would both write'),
}


@pytest.mark.parametrize('case', list(CASES))
def test_unusable_arguments_write_nothing(setup, case, capsys):
    tmp = setup['tmp']
    (tmp / 'empty').mkdir(exist_ok=True)
    (tmp / 'dup').mkdir(exist_ok=True)
    torch.save({'model': {'backbone.weight': torch.zeros(3)}}, tmp / 'other.pth')
    changes, message = CASES[case]
    opts = {'--exp': '0', '--run': '0', '--checkpoint': str(setup['ckpt']), 'inputs': [str(setup['images'])]}
    opts.update({k: [x.format(tmp=tmp) for x in v] if k == 'inputs' else v.format(tmp=tmp)
                 for k, v in changes.items()})
    out = tmp / f'out_{case}'
    argv = [x for k in ('--exp', '--run', '--checkpoint') for x in (k, opts[k])]
    rc = tool.main(argv + ['--out', str(out), '--device', 'cpu', *opts['inputs']])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith('error: '), err
    assert message in err[0]
    assert not out.exists()
