# The frozen MaskCLIP ViT-B/16 guidance encoder (spec §2, §3.5): only the dense CLIP
# embedding (out index 12) is used. It stays at img_size 512 (pos-embed resized at runtime).
img_size = 512
backbone = dict(
    type='MaskClipVisionTransformer',  # defaults: CLIP ViT-B/16
    img_size=(512, 512),
    out_indices=None,
    pretrained='clip')
