"""Class -> concept row indices of the SemiVL concept text embeddings (spec §3.2).

The concept files (`voc12_wbg_concept4_single.npy`, 98 rows; `cityscapes_concept3_single.npy`,
54 rows) hold one CLIP text embedding per concept, class by class, in the order below. Guidance
takes, per class, the max cosine over that class's rows. The grouping is contiguous; it is
verified by `tests/test_model_golden.py` (the release's MaskCLIP guidance labels) and by
`tests/test_model_concepts.py` (the `conceptavg` files are the renormalised group means).
"""
from __future__ import annotations

from typing import Sequence

VOC_CONCEPT4_NAMES: list[list[str]] = [
    ['background', 'bed', 'building', 'cabinet', 'ceiling', 'curtain', 'door', 'fence',
     'floor', 'grass', 'ground', 'mountain', 'road', 'rock', 'shelves', 'sidewalk', 'sky',
     'snow', 'tree', 'wall', 'water', 'window', 'hang glider', 'helicopter', 'jet ski',
     'go-cart', 'tractor', 'emergency vehicle', 'lorry', 'truck', 'lion', 'stool', 'bench',
     'wheelchair', 'coffee table', 'desk', 'side table', 'picnic bench', 'wolve',
     'flowers in a vase', 'goat', 'tram', 'laptop', 'advertising display', 'vehicle interior'],
    ['aeroplane', 'airplane', 'glider'],
    ['bicycle', 'tricycle', 'unicycle'],
    ['bird'],
    ['boat', 'ship', 'rowing boat', 'pedalo'],
    ['bottle', 'plastic bottle', 'glass bottle', 'feeding bottle'],
    ['bus', 'minibus'],
    ['car', 'van', 'large family car', 'realistic toy car'],
    ['cat', 'domestic cat'],
    ['chair', 'armchair', 'deckchair'],
    ['cow'],
    ['dining table', 'table for eating at'],
    ['dog', 'domestic dog'],
    ['horse', 'pony', 'donkey', 'mule'],
    ['motorbike', 'moped', 'scooter', 'sidecar'],
    ['person', 'people', 'baby', 'face'],
    ['potted plant', 'indoor plant in a pot', 'outdoor plant in a pot'],
    ['sheep'],
    ['sofa'],
    ['train', 'train carriage'],
    ['tv', 'monitor', 'standalone screen'],
]

CITYSCAPES_CONCEPT3_NAMES: list[list[str]] = [
    ['road', 'street', 'parking space'],
    ['sidewalk'],
    ['building', 'skyscaper', 'house', 'bus stop building', 'garage', 'car port', 'scaffolding'],
    ['individual standing wall, which is not part of a building'],
    ['fence', 'hole in fence'],
    ['pole', 'sign pole', 'traffic light pole'],
    ['traffic light'],
    ['traffic sign', 'parking sign', 'direction sign'],
    ['vegetation', 'tree', 'hedge'],
    ['terrain', 'grass', 'soil', 'sand'],
    ['sky'],
    ['person', 'pedestrian', 'walking person', 'standing person', 'person sitting on the ground',
     'person sitting on a bench', 'person sitting on a chair'],
    ['rider', 'cyclist', 'motorcyclist'],
    ['car', 'jeep', 'SUV', 'van'],
    ['truck', 'box truck', 'pickup truck', 'truck trailer'],
    ['bus'],
    ['train', 'tram'],
    ['motorcycle', 'moped', 'scooter'],
    ['bicycle'],
]


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
