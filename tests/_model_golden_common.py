"""Shared set-up of the golden tests: the exp-40 run-0 model with the release's synthetic
weights (`synth_state_dict(shapes, seed=1)`) and text embeddings, fp32, CPU, eval mode."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

REF = Path(__file__).resolve().parents[1].parent / 'shared' / 'reference'
SHAPES = REF / 'semivl_exp40_state_dict_shapes.json'
GOLDEN = REF / 'semivl_exp40_golden_seed1.npz'
TEXT = REF / 'text_embedding'


def require_reference() -> None:
    for path in (SHAPES, GOLDEN, REF / 'synth_weights.py', TEXT / 'voc12_wbg_single.npy',
                 TEXT / 'voc12_wbg_concept4_single.npy'):
        if not path.exists():
            pytest.skip(f'reference data missing: {path}')


def release_shapes() -> dict[str, list[int]]:
    return json.loads(SHAPES.read_text())


def synth_release_checkpoint(seed: int = 1) -> dict:
    """{'model': state_dict} with `module.` keys, as the release saves best.pth."""
    spec = importlib.util.spec_from_file_location('synth_weights', REF / 'synth_weights.py')
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    return {'model': synth.synth_state_dict(release_shapes(), seed)}


def text(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(TEXT / f'{name}.npy')).float()


def exp40_run0_cfg() -> dict:
    from semiseg.experiments.registry import get_runs
    return get_runs(40)[0]


def golden_model():
    """The exp-40 run-0 model loaded with the synthetic release checkpoint, in eval mode."""
    from semiseg.models import build_segmentor
    from semiseg.models.checkpoint import extract_state_dict, load_state_dict_checked
    model = build_segmentor(exp40_run0_cfg(), pretrained=False,
                            text_embedding=text('voc12_wbg_single'),
                            mcc_text_embedding=text('voc12_wbg_concept4_single'))
    load_state_dict_checked(model, extract_state_dict(synth_release_checkpoint(), 'synthetic'))
    return model.eval()


def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


def agreement(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a.numpy().astype(np.int64) == b.astype(np.int64)).mean())
