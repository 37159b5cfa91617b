"""Class names and class definitions ("concepts") used to build CLIP text embeddings.

Plain data. The names are the strings the SemiVL release put into its prompts (so
``pascal`` uses ``diningtable``/``pottedplant``/``tvmonitor`` and ADE keeps the trailing space of
``'bed '``); they are *not* the display names of the datasets.

``CLASS_CONCEPTS[dataset][k]`` is a list with one entry per class; each entry lists the concepts
(synonyms, sub-types, and for the VOC background: stuff classes and distractors) whose text
embeddings represent that class. Flattening the lists gives the rows of the
``{prefix}_concept{k}_single`` files, grouped contiguously per class, in class order. The group
sizes must match the release's files (VOC concept4: 98 rows, Cityscapes concept3: 54 rows).
"""
from __future__ import annotations

PASCAL_CLASS_NAMES: list[str] = [
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor',
]

CITYSCAPES_CLASS_NAMES: list[str] = [
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
    'motorcycle', 'bicycle',
]

COCO_CLASS_NAMES: list[str] = [
    'background', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book',
    'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
]

ADE_CLASS_NAMES: list[str] = [
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug',
    'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier', 'awning',
    'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track', 'apparel', 'pole',
    'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van',
    'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool',
    'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball',
    'food', 'step', 'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake',
    'dishwasher', 'screen', 'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light',
    'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate', 'monitor', 'bulletin board',
    'shower', 'radiator', 'glass', 'clock', 'flag',
]

# Background of VOC: the word itself, stuff classes, then objects that look like VOC classes
# but are not (distractors), so MaskCLIP guidance does not assign them to a foreground class.
PASCAL_CONCEPTS_4: list[list[str]] = [
    ['background', 'bed', 'building', 'cabinet', 'ceiling', 'curtain', 'door', 'fence', 'floor',
     'grass', 'ground', 'mountain', 'road', 'rock', 'shelves', 'sidewalk', 'sky', 'snow', 'tree',
     'wall', 'water', 'window', 'hang glider', 'helicopter', 'jet ski', 'go-cart', 'tractor',
     'emergency vehicle', 'lorry', 'truck', 'lion', 'stool', 'bench', 'wheelchair',
     'coffee table', 'desk', 'side table', 'picnic bench', 'wolve', 'flowers in a vase', 'goat',
     'tram', 'laptop', 'advertising display', 'vehicle interior'],
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

CITYSCAPES_CONCEPTS_3: list[list[str]] = [
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

CLASS_NAMES: dict[str, list[str]] = {
    'pascal': PASCAL_CLASS_NAMES,
    'cityscapes': CITYSCAPES_CLASS_NAMES,
    'coco': COCO_CLASS_NAMES,
    'ade': ADE_CLASS_NAMES,
}

CLASS_CONCEPTS: dict[str, dict[int, list[list[str]]]] = {
    'pascal': {4: PASCAL_CONCEPTS_4},
    'cityscapes': {3: CITYSCAPES_CONCEPTS_3},
}
