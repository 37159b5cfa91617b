# UniMatch's DeepLabV3+ with a deep-stem ResNet-50 (the release's `backbone: resnet50`).
_base_ = './dlv3p-r101.py'
model = dict(backbone=dict(depth=50, pretrained='pretrained/resnet50.pth'))
