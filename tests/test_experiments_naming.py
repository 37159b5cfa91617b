"""Run naming (google-research/semivl experiments.py): the humanizer, the final replacements, each piece."""
import dataclasses

import pytest

from semiseg.experiments.config import build_config
from semiseg.experiments.naming import finalize_name, humanize, raw_name, run_name
from semiseg.experiments.params import RunParams, make_params


@pytest.mark.parametrize('value,expected', [
    (83760, '83.8K'), (80, '80'), (10, '10'), (999, '999'), (1000, '1K'), (1500, '1.5K'),
    (999999, '1M'), (1234567, '1.23M'), (40, '40'), (2.5, '2.5'), (104880, '105K'),
    (3_000_000_000, '3B'),
])
def test_humanize(value, expected):
    assert humanize(value) == expected


@pytest.mark.parametrize('raw,final', [
    ('-[2048, 512]', '-2048j512'),
    ('-0.95', '-095'),
    ('-mcc[0.1, 0]c0.9', '-mcc01j0c09'),
    ('-b1.0_1x1x4', '-b11x1x4'),      # `.0_` eats the separator (release quirk)
    ('-s0.5-1.0-512', '-s05-1512'),    # `.0-` too
    ('True-False-None', 'T-F-N'),
    ('-(1, 2)', '-1j2'),
])
def test_final_replacements(raw, final):
    assert finalize_name(raw) == final


def _cfg(**overrides):
    return build_config(make_params(1, overrides), '/data')


def _name(**overrides):
    return run_name(_cfg(**overrides))


def test_default_name():
    assert _name() == 'voc-92-2048j512-512_zcl-vitb_svl-095-disdrop-plev_adamw-1e-04_ezsw'


@pytest.mark.parametrize('overrides,piece', [
    ({'dataset': 'cityscapes', 'split': '1_30'}, 'cs-1_30-'),
    ({'dataset': 'coco', 'img_scale': None}, 'coco-92-512_'),
    ({'scale_ratio_range': (0.75, 1.5)}, '-s075-15-512'),
    ({'labeled_photometric_distortion': True}, '-512-phd_'),
    ({'text_embedding_variant': 'conceptavg4_single'}, 'vitb-tcavg4s_'),
    ({'mcc_text': 'concept2_single', 'pl_text': 'multi'}, 'vitb-mtc2s-ptm_'),
    ({'use_fp': False, 'conf_mode': 'pixelratio', 'conf_thresh': 0.9}, '_svl-nfp-cpr-09-disdrop'),
    ({'method': 'unimatch'}, '_um-095-disdrop-plev_'),
    ({'method': 'supervised'}, '_sup-disdrop_adamw'),
    ({'method': 'supervised', 'epoch_over': 'unlabeled'}, '_sup-eqit-disdrop_adamw'),
    ({'disable_dropout': False, 'pleval': False}, '_svl-095_adamw'),
    ({'fp_rate': 0.3}, '-plev-fpr03_'),
    ({'maskclip_consistency_lambda': 0.1}, '-plev-mcc01_'),
    ({'mcc_conf_thresh': 0.8, 'mcc_loss_reduce': 'mean_valid'}, '-plevc08-mv_'),
    ({'renorm_clip_img': True}, '-plev-rnci_'),
    ({'criterion': 'OHEM', 'criterion_u': 'CELoss'}, '-plev-oh-uce_'),
    ({'opt': 'original', 'lr': 0.001}, '_org-1e-03_'),
    ({'backbone_lr_mult': 0.1, 'conv_enc_lr_mult': 0.5, 'warmup_iters': 1500}, '-b01-cl05-w15K_'),
    ({'backbone_lr_mult': 10}, '_adamw-1e-04_ezsw'),  # integer 10 equals the default
    ({'n_gpus': 8, 'batch_size': 1, 'epochs': 10}, '_1x8x1-ep10_'),
    ({'epochs': None, 'iters': 83760, 'scheduler_max_iters': 90000}, '_adamw-1e-04-i838K-smi90000_ezsw'),
    ({'eval_mode': 'original'}, '_eor'),
    ({'eval_mode': 'sliding_window'}, '_esw'),
])
def test_name_pieces(overrides, piece):
    assert piece in _name(**overrides)


def test_fix_resize_pos_only_with_clip_and_other_crop():
    assert '-frp' not in _name(mcc_fix_resize_pos=True, maskclip_consistency_lambda=0.1)
    assert '-frp' not in _name(mcc_fix_resize_pos=True, crop_size=801)
    assert '-frp' in _name(mcc_fix_resize_pos=True, crop_size=801, maskclip_consistency_lambda=0.1)


@pytest.mark.parametrize('overrides', [
    {'mcc_text': 'concept9_single'},
    {'eval_mode': 'magic_window'},
    {'conf_mode': 'nope'},
])
def test_unknown_choices_raise_keyerror(overrides):
    with pytest.raises(KeyError, match='choices'):
        _name(**overrides)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match='unknown method .mystery.; known methods: supervised, fixmatch'):
        _name(method='mystery')


def test_every_registered_method_has_a_name():
    from semiseg.methods.registry import METHODS
    names = {m: _name(method=m) for m in METHODS}
    assert len(set(names.values())) == len(names)
    assert '_fm-095-disdrop-plev_' in names['fixmatch'] and '-nfp' not in names['fixmatch']


def test_raw_name_keeps_python_reprs():
    raw = raw_name(_cfg(maskclip_consistency_lambda=[0.1, 0], mcc_conf_thresh=0.9))
    assert '-[2048, 512]-512_' in raw and '-mcc[0.1, 0]c0.9' in raw


def test_params_reject_unknown_and_conflicting():
    with pytest.raises(ValueError, match='unknown run parameter'):
        make_params(1, {'learning_rate': 1})
    with pytest.raises(ValueError, match='both epochs'):
        make_params(1, {'iters': 100})
    with pytest.raises(ValueError, match='unknown engine option'):
        make_params(1, {'options': {'workers': 2}})
    assert dataclasses.is_dataclass(RunParams)
