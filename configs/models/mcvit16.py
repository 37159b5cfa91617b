# The frozen MaskCLIP ViT-B/16 guidance encoder (google-research/semivl
# `configs/_base_/models/mcvit16.py`, run by `VLM.forward_maskclip` in `model/vlm.py`): only the dense CLIP
# embedding (out index 12) is used. It stays at img_size 512 (pos-embed resized at runtime).
img_size = 512
backbone = dict(
    type='MaskClipVisionTransformer',  # defaults: CLIP ViT-B/16
    img_size=(512, 512),
    out_indices=None,
    pretrained='clip')
