"""Model facts come from semiseg/utils/model_registry.py: one entry per configs/models/ file, read by
the config generation and check instead of the model's name."""
from __future__ import annotations

from pathlib import Path

import pytest

from semiseg.utils.model_registry import ALLSPARK, MODELS, UNKNOWN, VISION_LANGUAGE, model_info

CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / 'models'


def test_every_model_config_has_an_entry_and_every_entry_a_config():
    assert sorted(n for n, info in MODELS.items() if info.has_config) == sorted(p.stem for p in CONFIGS.glob('*.py'))


@pytest.mark.parametrize('name, family', [
    ('mmseg.vlm-zegclip-rd-pt-vitb', VISION_LANGUAGE), ('mmseg.zegclip-vitb', VISION_LANGUAGE),
    ('vlm-vlg-aspp-s2p2-sk02-ft-tinyvit', VISION_LANGUAGE),
    ('mmseg.allspark-mit-tiny', ALLSPARK), ('mmseg.dpt-dinov2b', 'dpt'), ('mmseg.dlv3p-r101', 'deeplab'),
    ('mmseg.does-not-exist', UNKNOWN), ('../etc/passwd', UNKNOWN)])
def test_model_info_reads_the_entry(name, family):
    info = model_info(name)
    assert info.family == family
    assert info.vision_language == (family == VISION_LANGUAGE) and info.allspark == (family == ALLSPARK)


def test_a_declared_fact_wins_over_the_name(monkeypatch):
    from semiseg.engine.config_check import method_model_problem
    from semiseg.utils import model_registry
    cfg = {'method': 'allspark', 'model': 'mmseg.dlv3p-r101'}
    assert 'needs the AllSpark decoder' in method_model_problem(cfg)
    monkeypatch.setitem(model_registry.MODELS, 'dlv3p-r101', model_registry.ModelInfo(ALLSPARK))
    assert method_model_problem(cfg) is None
