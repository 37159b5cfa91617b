"""The method registry: every fact about a training method in one `MethodInfo`.

Run naming, config generation, the data layer (which batch views to build) and the engine (which
loaders to zip) read it. Light on purpose (no torch): the implementation class is named by a
'module:Class' string and imported by `build_method`.

Batch views (keys of the dicts the datasets return; docs/ARCHITECTURE.md §5):
- labeled: `img_x` (geometric augmentation only), `img_x_s` (plus a strong photometric view:
  AllSpark), `mask_x`;
- unlabeled: `img_w` (weak view), `img_s1`, `img_s2` (strong views), `ignore` (255 on padding),
  `box1`, `box2` (CutMix boxes);
- partner: unlabeled views of a second stream with the same image ids, keys suffixed `_o`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

LABELED_VIEWS = ('img_x', 'img_x_s', 'mask_x')
UNLABELED_VIEWS = ('img_w', 'img_s1', 'img_s2', 'ignore', 'box1', 'box2')
# the pseudo-label keys a method may read, in the release configs' order
PSEUDO_LABEL_KEYS = ('use_fp', 'conf_mode', 'conf_thresh', 'pleval')
# the number a method's paper reports (`--results` compares ours by the same rule): the best or the
# final evaluation, of the trained model or (ema_*) of its EMA teacher
REPORT_RULES = ('best', 'final', 'ema_best', 'ema_final')


class NamePiece(NamedTuple):
    """How a method's own config key shows in run names: `piece` (a bool key) or piece + value,
    when the value differs from its RunParams default; `exact`: the name shows the value exactly
    (else a changed value also adds the `_h<hash>` suffix, semiseg.experiments.naming)."""
    key: str
    piece: str
    exact: bool = True


@dataclass(frozen=True)
class MethodInfo:
    """What the rest of the system needs to know about a training method."""

    name: str                                   # the run config's `method` value
    abbrev: str                                 # in run names (semivl -> svl)
    impl: str                                   # 'module:Class' of the Method subclass
    description: str                            # one line for --list-methods and docs
    labeled_views: tuple[str, ...] = ('img_x', 'mask_x')
    unlabeled_views: tuple[str, ...] = ()       # empty: a labeled-only method
    partner_views: tuple[str, ...] = ()         # empty: no second unlabeled stream
    pseudo_label_keys: tuple[str, ...] = ()     # which of PSEUDO_LABEL_KEYS it reads
    config_keys: tuple[str, ...] = ()           # further run keys it reads (RunParams field names)
    name_pieces: tuple[NamePiece, ...] = ()     # how each of config_keys shows in run names
    teacher: bool = False                       # keeps an EMA teacher (evaluated and saved too)
    report: str = 'best'                        # which number its paper reports (REPORT_RULES)

    def __post_init__(self) -> None:
        bad = [v for v in self.labeled_views if v not in LABELED_VIEWS]
        bad += [v for v in self.unlabeled_views + self.partner_views if v not in UNLABELED_VIEWS]
        bad += [k for k in self.pseudo_label_keys if k not in PSEUDO_LABEL_KEYS]
        if tuple(p.key for p in self.name_pieces) != self.config_keys:
            bad.append(f'name_pieces of {self.config_keys}')
        bad += [] if self.report in REPORT_RULES[:2] or (self.teacher and self.report in REPORT_RULES) \
            else [f'report={self.report}']
        if bad:
            raise ValueError(f'method {self.name}: unknown views or keys {bad}')

    @property
    def uses_unlabeled(self) -> bool:
        return bool(self.unlabeled_views)

    @property
    def uses_partner(self) -> bool:
        return bool(self.partner_views)

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """Every key of the batch dict the method's `step` receives."""
        return self.labeled_views + self.unlabeled_views + tuple(f'{v}_o' for v in self.partner_views)


_ALL_U = UNLABELED_VIEWS
_PARTNER = ('img_w', 'img_s1', 'img_s2', 'ignore')
_EMA_PIECES = (NamePiece('ema_decay', '-ema', exact=False), NamePiece('lock_backbone', '-lb'))

METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo('supervised', 'sup', 'semiseg.methods.supervised:Supervised',
               'labeled cross-entropy only (UniMatch supervised.py)'),
    MethodInfo('fixmatch', 'fm', 'semiseg.methods.fixmatch:FixMatch',
               'FixMatch with CutMix: one strong view (UniMatch fixmatch.py)',
               unlabeled_views=('img_w', 'img_s1', 'ignore', 'box1'),
               partner_views=('img_w', 'img_s1', 'ignore'),
               pseudo_label_keys=('conf_mode', 'conf_thresh', 'pleval')),
    MethodInfo('unimatch', 'um', 'semiseg.methods.unimatch:UniMatch',
               'UniMatch: dual strong views + feature perturbation (CVPR 2023)',
               unlabeled_views=_ALL_U, partner_views=_PARTNER, pseudo_label_keys=PSEUDO_LABEL_KEYS),
    MethodInfo('semivl', 'svl', 'semiseg.methods.semivl:SemiVL',
               'SemiVL: UniMatch + MaskCLIP consistency guidance (ECCV 2024)',
               unlabeled_views=_ALL_U, partner_views=_PARTNER, pseudo_label_keys=PSEUDO_LABEL_KEYS),
    MethodInfo('allspark', 'asp', 'semiseg.methods.allspark:AllSpark',
               'AllSpark: pseudo-labels + channel cross-attention with a semantic memory (CVPR 2024)',
               labeled_views=('img_x_s', 'mask_x'), unlabeled_views=('img_w', 'ignore'),
               config_keys=('warmup_epoch', 'ignore_unlabeled_padding'),
               name_pieces=(NamePiece('warmup_epoch', '-we'),
                            NamePiece('ignore_unlabeled_padding', '-rpad'))),   # shown when padding is trained on
    MethodInfo('unimatch_v2', 'um2', 'semiseg.methods.unimatch_v2:UniMatchV2',
               'UniMatch V2: EMA teacher, dual strong views with complementary dropout (TPAMI 2025)',
               unlabeled_views=_ALL_U, pseudo_label_keys=('conf_thresh',),
               config_keys=('ema_decay', 'lock_backbone'), name_pieces=_EMA_PIECES, teacher=True,
               report='ema_best'),   # its README = max over epochs of the EMA mIoU in its training-logs/
    MethodInfo('fixmatch_ema', 'fme', 'semiseg.methods.fixmatch_ema:FixMatchEMA',
               'FixMatch with an EMA teacher: one strong view, UniMatch V2\'s baseline (UniMatch-V2 fixmatch.py)',
               unlabeled_views=('img_w', 'img_s1', 'ignore', 'box1'), pseudo_label_keys=('conf_thresh',),
               config_keys=('ema_decay', 'lock_backbone'), name_pieces=_EMA_PIECES, teacher=True,
               report='ema_best'),
)}


def method_info(name: str) -> MethodInfo:
    """The registry entry of `name`; the error lists the known methods."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f'unknown method {name!r}; known methods: {", ".join(METHODS)}') from None
