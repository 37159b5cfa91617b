"""`python -m semiseg.tools.eval`: our and release-format checkpoints, printed IoUs, saved predictions."""
from __future__ import annotations

import _engine_standins as standins
import numpy as np
import pytest
import torch
from PIL import Image

from semiseg.tools import _common as common
from semiseg.tools import eval as eval_tool

torch.set_num_threads(1)


class _Payload:
    """Unpickling this would create a marker file: a stand-in for malicious code in a checkpoint."""

    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(__file__).parent / 'pwned',))


@pytest.fixture
def trained(monkeypatch, tmp_path):
    cfg = standins.base_config()
    # the tool's own dependencies, replaced by the stand-ins (its scoring path stays the real one)
    monkeypatch.setattr(common, 'get_runs', lambda exp, data_root=None: [cfg])
    monkeypatch.setattr(eval_tool, 'val_dataset', lambda cfg: standins.ValSet())
    monkeypatch.setattr(eval_tool, 'dataset_info', lambda name, root=None: standins.Info())
    monkeypatch.setattr(common, 'build_segmentor', lambda cfg, pretrained=False: standins.build_model(cfg))
    torch.manual_seed(0)
    model = standins.TinySegmentor(standins.NCLASS)
    ours = tmp_path / 'latest.pth'
    torch.save({'model': model.state_dict(), 'iteration': 12}, ours)
    release = tmp_path / 'release_best.pth'
    torch.save({'model': {f'module.{k}': v for k, v in model.state_dict().items()}, 'epoch': 3}, release)
    expected = standins.evaluate(model, torch.utils.data.DataLoader(standins.ValSet(), batch_size=1), cfg)
    return ours, release, expected


def test_eval_prints_iou_for_ours_and_release_checkpoints(trained, capsys):
    ours, release, expected = trained
    outputs = []
    for path in (ours, release):
        assert eval_tool.main(['--exp', '0', '--run', '0', '--checkpoint', str(path), '--device', 'cpu']) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0].splitlines()[1:] == outputs[1].splitlines()[1:]
    assert f'mIoU: {expected["miou"]:.2f}' in outputs[0]
    assert f'Class [2 dark] IoU: {expected["per_class_iou"][2]:.2f}' in outputs[0]


def test_eval_saves_palette_predictions_and_logits(trained, tmp_path, capsys):
    ours, _, _ = trained
    pred_dir = tmp_path / 'preds'
    assert eval_tool.main(['--exp', '0', '--run', '0', '--checkpoint', str(ours), '--device', 'cpu',
                           '--pred-dir', str(pred_dir), '--save-logits']) == 0
    pngs = sorted(pred_dir.glob('*.png'))
    assert [p.name for p in pngs] == [f'val_{i}.png' for i in range(6)]
    png = Image.open(pngs[0])
    assert png.mode == 'P' and png.size == (standins.SIZE, standins.SIZE)
    assert png.getpalette()[3:6] == [255, 0, 0]
    logits = np.load(pred_dir / 'val_0.npy')
    assert logits.shape == (standins.NCLASS, standins.SIZE, standins.SIZE) and logits.dtype == np.float16
    assert (logits.astype(np.float32).argmax(0) == np.asarray(png)).mean() > 0.99


def test_eval_reports_bad_input_in_one_line(trained, tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'\x00garbage')   # neither text nor a known file type: torch.load is asked
    assert eval_tool.main(['--exp', '0', '--run', '0', '--checkpoint', str(bad), '--device', 'cpu']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: cannot read') and 'bad.pth' in err[0]
    evil = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'payload': _Payload()}, evil)
    assert eval_tool.main(['--exp', '0', '--run', '0', '--checkpoint', str(evil), '--device', 'cpu']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'refusing to load' in err[0] and '--trust-checkpoint' in err[0]
    assert not (tmp_path / 'pwned').exists()
    assert eval_tool.main(['--exp', '0', '--run', '5', '--checkpoint', str(bad), '--device', 'cpu']) == 1
    assert 'has runs 0..0, not 5' in capsys.readouterr().err
