# Exp-41 ablation: the DeepLabv3+ variant of vlm-dlv3p-bn12-sk4-ft-mcvitb with spatial fine-tuning
# of the MaskCLIP ViT-B/16 (attention + pos-embed train) instead of full fine-tuning.
_base_ = './vlm-dlv3p-bn12-sk4-ft-mcvitb.py'
model = dict(finetune='attn_pos')
