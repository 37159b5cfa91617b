"""Label ids with a meaning of their own, used by data, methods, models and evaluation."""

IGNORE_INDEX = 255   # ignored pixel: VOC object borders, padding of labeled crops, low confidence
UNLABELED_PAD = 254  # padding of unlabeled crops in the mask; becomes ignore = 255 (UniMatch's marker)
