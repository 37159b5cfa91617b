# Exp-41 ablation: ZegCLIP (google-research/semivl `configs/_base_/models/vlm-zegclip-rd-pt-vitb.py`):
# CLIP ViT-B/16 with deep visual prompt tuning (only prompt parameters train) and the ATM head
# with relationship descriptor; its own loss
# (SegLossPlus: focal x20 + dice) is the 'mmseg' criterion of these runs.
img_size = 512
model = dict(
    type='VLMSegmentor',
    finetune='full',  # the backbone freezes everything but its prompts itself
    backbone=dict(
        type='VPTCLIPVisionTransformer',
        input_resolution=512,
        patch_size=16,
        width=768,
        layers=12,
        output_dim=512,
        drop_path_rate=0.1,
        out_indices=[11],
        get_embeddings=True,
        num_tokens=10,
        prompt_dim=768,
        total_d_layer=11,
        pretrained='clip'),
    decode_head=dict(
        type='ATMSingleHeadSeg',
        img_size=512,
        num_classes=21,
        in_channels=512,
        channels=512,
        embed_dims=512,
        num_layers=3,
        num_heads=8,
        use_stages=1,
        use_proj=False,
        loss_decode=dict(type='SegLossPlus', dec_layers=3, mask_weight=20.0, dice_weight=1.0,
                         loss_weight=1.0)),
)
