# Exp-41 ablation: MaskCLIP ViT-B/16 with full fine-tuning and a
# DeepLabv3+ head instead of the VLG decoder (google-research/semivl
# `configs/_base_/models/vlm-dlv3p-bn12-sk4-ft-mcvitb.py`): ASPP on the 512-d dense CLIP
# embedding (index 12), low-level skip from the layer-4 v-path. Text is not used by the head.
img_size = 512
model = dict(
    type='VLMSegmentor',
    finetune='full',
    backbone=dict(
        type='MaskClipVisionTransformer',  # defaults: CLIP ViT-B/16
        img_size=(512, 512),
        out_indices=[4, 12],
        pretrained='clip'),
    decode_head=dict(
        type='DLV3PHead',
        img_size=512,
        num_classes=21,
        c1_in_channels=768,   # v4
        c4_in_channels=512,   # dense CLIP embedding -> ASPP out 64, fuse in 112
        c1_channels=48,
        channels=256,
        dilations=(6, 12, 18),
        align_corners=False),
)
