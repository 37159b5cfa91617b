# UniMatch V2 with DINOv2 ViT-B/14 (the README's headline model): blocks 2, 5, 8, 11, DPT features
# 128, projections 96/192/384/768 (`unimatch_v2.py`, model_configs['base']).
_base_ = './dpt-dinov2s.py'
model = dict(
    backbone=dict(arch='base'),
    decode_head=dict(in_channels=768, features=128, out_channels=[96, 192, 384, 768]))
