"""semiseg: semi-supervised semantic segmentation experiments (SemiVL, UniMatch, AllSpark)."""
__version__ = "0.1.0"
