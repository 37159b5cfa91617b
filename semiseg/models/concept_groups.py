"""Class -> concept row indices of the SemiVL concept text embeddings (spec §3.2).

The concept files (`voc12_wbg_concept4_single.npy`, 98 rows; `cityscapes_concept3_single.npy`,
54 rows) hold one CLIP text embedding per concept, class by class, in the order of
`semiseg.data.class_definitions.CLASS_CONCEPTS`. Guidance
takes, per class, the max cosine over that class's rows. The grouping is contiguous; it is
verified by `tests/test_model_golden.py` (the release's MaskCLIP guidance labels) and by
`tests/test_model_concepts.py` (the `conceptavg` files are the renormalised group means).
"""
from __future__ import annotations

from typing import Sequence

from semiseg.data.class_definitions import CLASS_CONCEPTS

VOC_CONCEPT4_NAMES: list[list[str]] = CLASS_CONCEPTS['pascal'][4]
CITYSCAPES_CONCEPT3_NAMES: list[list[str]] = CLASS_CONCEPTS['cityscapes'][3]


def groups_from_names(class_concepts: Sequence[Sequence[str]]) -> list[list[int]]:
    """Row indices per class when the concepts are stored flattened, class by class."""
    groups, start = [], 0
    for concepts in class_concepts:
        groups.append(list(range(start, start + len(concepts))))
        start += len(concepts)
    return groups


VOC_CONCEPT4_GROUPS: list[list[int]] = groups_from_names(VOC_CONCEPT4_NAMES)  # 98 rows
CITYSCAPES_CONCEPT3_GROUPS: list[list[int]] = groups_from_names(CITYSCAPES_CONCEPT3_NAMES)  # 54

# text-embedding file stem -> its class -> concept row groups
CONCEPT_GROUPS: dict[str, list[list[int]]] = {
    'voc12_wbg_concept4_single': VOC_CONCEPT4_GROUPS,
    'cityscapes_concept3_single': CITYSCAPES_CONCEPT3_GROUPS,
}


def concept_groups_for(stem: str) -> list[list[int]] | None:
    """Groups for a concept embedding file stem (e.g. 'voc12_wbg_concept4_single'), else None."""
    return CONCEPT_GROUPS.get(stem)
