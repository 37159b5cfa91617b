"""Label ids with a meaning of their own, used by data, methods, models and evaluation."""

IGNORE_INDEX = 255   # ignored pixel: VOC object borders, padding of labeled crops, low confidence
UNLABELED_PAD = 254  # padding of unlabeled crops in the mask; becomes ignore = 255 (UniMatch's marker)
MAX_CLASSES = UNLABELED_PAD  # class ids 0..253: a 255th class would be label 254, read as padding
