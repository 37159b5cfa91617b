# Experiment 0's CPU demo model: UniMatch's DeepLabV3+ at toy scale. One bottleneck per stage,
# stage widths 16/32/64/128 (outputs x4), a 32-channel deep stem, output stride 16; ASPP on the
# 512-channel c4 has 64 channels, the decoder 64. Random init (no ImageNet file).
_base_ = './dlv3p-r101.py'
model = dict(
    backbone=dict(depth=None, stage_blocks=(1, 1, 1, 1), base_channels=16, stem_channels=32,
                  pretrained=None),
    decode_head=dict(c1_in_channels=64, c4_in_channels=512, c1_channels=16, channels=64))
