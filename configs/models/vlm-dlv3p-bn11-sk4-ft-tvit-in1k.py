# Exp-41 ablation: timm ViT-B/16 (ImageNet-21k pretrained, 1k fine-tuned; fed ImageNet-normalised
# input as in the release) with full fine-tuning and a DeepLabv3+ head (google-research/semivl
# `configs/_base_/models/vlm-dlv3p-bn11-sk4-ft-tvit-in1k.py`): ASPP on
# norm(block 11), low-level skip norm(block 4).
img_size = 512
model = dict(
    type='VLMSegmentor',
    finetune='full',
    backbone=dict(
        type='TIMMVisionTransformer',
        model_name='vit_base_patch16_224',
        pretrained=True,
        drop_path_rate=0.1,
        img_size=512,
        out_indices=[4, 11]),
    decode_head=dict(
        type='DLV3PHead',
        img_size=512,
        num_classes=21,
        c1_in_channels=768,
        c4_in_channels=768,   # ASPP out 96, fuse in 144
        c1_channels=48,
        channels=256,
        dilations=(6, 12, 18),
        align_corners=False),
)
