# AllSpark (CVPR 2024), pascal: MiT-B5 encoder (ImageNet weights from the SegFormer release,
# pretrained/mit_b5.pth) + AllSpark decoder (channel cross-attention with semantic memory,
# SegFormer head), as xmed-lab/AllSpark configs/pascal_allspark.yaml builds it. image_size is the
# training crop (cityscapes: 801, warmup_epoch 15). The release's defects are fixed by default;
# set the decode_head `release_*` switches to True to reproduce them.
model = dict(
    type='SemiSegmentor',
    backbone=dict(
        type='MiT',
        arch='b5',
        drop_path_rate=0.1,
        pretrained='pretrained/mit_b5.pth'),
    decode_head=dict(
        type='AllSparkHead',
        num_classes=21,
        in_channels=[64, 128, 320, 512],
        embedding_dim=768,
        num_heads=2,
        image_size=513,
        warmup_epoch=5,
        attn_dropout=0.1,
        dropout_ratio=0.1),
    release_key_prefixes={'decoder.': 'decode_head.'})
