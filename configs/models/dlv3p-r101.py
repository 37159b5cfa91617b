# UniMatch's DeepLabV3+ with a deep-stem ResNet-101 (LiheYoung/UniMatch `configs/pascal.yaml`,
# `model/semseg/deeplabv3plus.py`): output stride 16 (layer4 dilated), ASPP rates 6/12/18 on
# c4 = layer4, decoder skip from c1 = layer1; 59.5M parameters with 21 classes.
model = dict(
    type='SemiSegmentor',
    backbone=dict(
        type='DeepStemResNet',
        depth=101,
        replace_stride_with_dilation=(False, False, True),
        out_indices=(0, 3),  # [c1, c4]: the maps feature perturbation drops channels of
        pretrained='pretrained/resnet101.pth'),  # the release's ImageNet file
    decode_head=dict(
        type='UniMatchDeepLabV3PlusHead',
        num_classes=21,
        c1_in_channels=256,
        c4_in_channels=2048,
        dilations=(6, 12, 18)),
    # release checkpoint keys (after `module.`): backbone.* is ours; the decoder's modules move
    # under decode_head.
    release_key_prefixes={
        'head.': 'decode_head.head.',
        'reduce.': 'decode_head.reduce.',
        'fuse.': 'decode_head.fuse.',
        'classifier.': 'decode_head.classifier.'})
