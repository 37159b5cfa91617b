# SemiVL (exps 40/42/43): MaskCLIP ViT-B/16 with spatial fine-tuning (attention + pos-embed
# train) and the VLG decoder (ASPP spatial reasoning, 2 semantic layers, pool 4, skips from
# ViT layers 0 and 4), as google-research/semivl
# `configs/_base_/models/vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb.py`.
img_size = 512
model = dict(
    type='VLMSegmentor',
    finetune='attn_pos',
    backbone=dict(
        type='MaskClipVisionTransformer',  # defaults: CLIP ViT-B/16
        img_size=(512, 512),
        out_indices=[0, 4, 12],
        pretrained='clip'),
    decode_head=dict(
        type='VLGHead',
        img_size=512,
        num_classes=21,
        text_in_channels=512,
        text_channels=128,
        up_channels=(64, 32),
        skip_in_channels=(768, 768),
        skip_channels=(32, 16),
        skip_from_conv_feat=False,
        num_layers=2,
        num_heads=4,
        channels=128,
        pool_size=4,
        conv1_ksize=7,
        loss_decode=None,
        align_corners=False),
)
