# Experiment 0 (CPU demo) for UniMatch V2: a tiny DINOv2-style ViT (patch 8, width 64, 4 blocks,
# 2 heads, all four blocks to the head; positional grid 8x8 for 64x64 crops) and a DPT head of
# width 16, random init. Inputs must be multiples of 8 (evaluate 'original' with size_multiple=8).
_base_ = './dpt-dinov2s.py'
model = dict(
    backbone=dict(
        arch=None,
        img_size=64,
        patch_size=8,
        embed_dim=64,
        depth=4,
        num_heads=2,
        out_indices=[0, 1, 2, 3],
        pretrained=None),
    decode_head=dict(in_channels=64, num_classes=5, features=16, out_channels=[8, 16, 32, 64]))
