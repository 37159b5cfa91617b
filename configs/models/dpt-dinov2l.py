# UniMatch V2 with DINOv2 ViT-L/14: blocks 4, 11, 17, 23, DPT features 256, projections
# 256/512/1024/1024 (`unimatch_v2.py`, model_configs['large']).
_base_ = './dpt-dinov2s.py'
model = dict(
    backbone=dict(arch='large'),
    decode_head=dict(in_channels=1024, features=256, out_channels=[256, 512, 1024, 1024]))
