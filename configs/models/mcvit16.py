# The frozen MaskCLIP ViT-B/16 guidance encoder (spec §2, §3.5): only the dense CLIP
# embedding (out index 12) is used. It stays at img_size 512 (pos-embed resized at runtime).
img_size = 512
backbone = dict(
    type='MaskClipVisionTransformer',
    img_size=(512, 512),
    patch_size=16,
    embed_dims=768,
    num_layers=12,
    num_heads=12,
    mlp_ratio=4,
    out_dims=512,
    out_indices=None,
    ln_eps=1e-6,
    interpolate_mode='bicubic',
    pretrained='pretrained/ViT-B-16.pt')
