# Experiment 0 (CPU demo): a tiny CLIP-style ViT (patch 8, 4 layers, width 64, 512-d
# projection; skips from layers 0 and 2) with a small VLG head, full fine-tuning, random init.
# Its guidance encoder is a tiny random ViT of the same kind (defined here, so it overrides the
# run config's `clip_encoder: mcvit16`).
img_size = 64
_tiny_vit = dict(
    type='MaskClipVisionTransformer',
    img_size=(64, 64),
    patch_size=8,
    embed_dims=64,
    num_layers=4,
    num_heads=2,
    mlp_ratio=2,
    out_dims=512,
    ln_eps=1e-6,
    interpolate_mode='bicubic',
    pretrained=None)
model = dict(
    type='VLMSegmentor',
    finetune='full',
    backbone=dict(_tiny_vit, out_indices=[0, 2, 4]),
    decode_head=dict(
        type='VLGHead',
        img_size=64,
        num_classes=5,
        text_in_channels=512,
        text_channels=16,
        up_channels=(16, 8),
        skip_in_channels=(64, 64),
        skip_channels=(8, 4),
        skip_from_conv_feat=False,
        num_layers=2,
        num_heads=2,
        channels=16,
        pool_size=2,
        conv1_ksize=3,
        aspp_rates=(1, 2, 3),
        loss_decode=None,
        align_corners=False),
)
clip_encoder = dict(_tiny_vit, out_indices=None)
