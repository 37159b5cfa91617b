# SemiVL on Cityscapes (exp 44): the exp-40 model with skips from ViT layer 4 and a ResNet-101-v1c
# stem + stage 1 (stride 4, 256 channels), as google-research/semivl
# `configs/_base_/models/vlm-vlg-aspp-s2p4-skr04-ftap-mcvitb.py`. Spatial fine-tuning (attention +
# pos-embed) of the MaskCLIP ViT-B/16; the ResNet trains fully (lr via conv_encoder lr_mult).
_base_ = './vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb.py'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(out_indices=[4, 12]),
    conv_encoder=dict(
        type='ResNetV1c',
        depth=101,
        num_stages=1,  # deep stem + maxpool + stage 1 (3 bottlenecks) only
        out_indices=[0],
        dilations=[1],
        strides=[1],
        norm_cfg=norm_cfg,
        style='pytorch',
        contract_dilation=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet101_v1c')),
    decode_head=dict(
        num_classes=19,
        skip_in_channels=(768, 256),  # ViT v4, then ResNet stage 1
        skip_channels=(32, 32),
        skip_from_conv_feat=True),
)
