# UniMatch V2 model (LiheYoung/UniMatch-V2 `model/semseg/dpt.py`, `DPT`): DINOv2 ViT-S/14 encoder
# (blocks 2, 5, 8, 11, normalised) and a DPT head (features 64, projections 48/96/192/384), as
# `unimatch_v2.py` builds it for `backbone: dinov2_small`. The encoder starts from the official
# ImageNet DINOv2 weights (download cached by torch.hub, or a local dinov2_vits14_pretrain.pth);
# the head from PyTorch's default init. Release checkpoints rename `head.` -> `decode_head.`.
model = dict(
    type='SemiSegmentor',
    release_key_prefixes={'head.': 'decode_head.'},
    comp_drop_keep_ratio=0.5,  # half of the pairs stay unperturbed (`DPT.forward`, comp_drop)
    backbone=dict(
        type='DINOv2ViT',
        arch='small',
        img_size=518,          # stored positional grid 37x37, interpolated for other inputs
        patch_size=14,
        pretrained='official'),
    decode_head=dict(
        type='DINOv2DPTHead',
        in_channels=384,
        num_classes=21,
        features=64,
        out_channels=[48, 96, 192, 384]),
)
