# UniMatch's DeepLabV3+ with aligned Xception-65 (LiheYoung/UniMatch `configs/coco.yaml`,
# `model/backbone/xception.py`): output stride 16, c1 = block2's second separable conv (256 ch),
# c4 = the exit flow (2048 ch); the same decoder as dlv3p-r101. 54.7M parameters with 81 classes.
_base_ = './dlv3p-r101.py'
model = dict(
    backbone=dict(_delete_=True, type='AlignedXception', output_stride=16,
                  pretrained='pretrained/xception.pth'),  # the release's ImageNet file
    decode_head=dict(num_classes=81))
