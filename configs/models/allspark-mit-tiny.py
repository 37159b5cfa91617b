# Experiment 0 (CPU demo): AllSpark on a tiny Mix Transformer (dims 16/32/48/64, one block per
# stage, heads 1/2/2/4), random init; the decoder is AllSpark's at embedding_dim 32 for crop 64
# (a 2x2 stage-4 grid, so the memory holds 4-token channel maps).
_base_ = './allspark-mitb5.py'
model = dict(
    backbone=dict(
        arch='b0',
        embed_dims=[16, 32, 48, 64],
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        pretrained=None),
    decode_head=dict(
        num_classes=5,
        in_channels=[16, 32, 48, 64],
        embedding_dim=32,
        image_size=64))
