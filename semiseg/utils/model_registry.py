"""What the run config needs to know about each model config (`configs/models/<name>.py`), declared
once here instead of read off the model's name.

Torch-free (the CLI generates and checks configs without importing torch or mmseg; the mmseg
configs themselves load only when a model is built). A new model config adds its entry;
tests/test_model_registry.py checks that every file under configs/models/ has one.
"""
from __future__ import annotations

from dataclasses import dataclass

from semiseg.utils.names import model_stem

VISION_LANGUAGE = 'vision-language'   # SemiVL's family: takes the release's MaskCLIP keys in model_args
ALLSPARK = 'allspark'                  # MiT + AllSpark decoder: trained by method allspark (or its supervised baseline)
DEEPLAB = 'deeplab'                    # DeepLabv3+ (UniMatch)
DPT = 'dpt'                            # DINOv2 + DPT head (UniMatch V2)
CLIP_ENCODER = 'clip-encoder'          # a guidance encoder (`clip_encoder`), not a segmentor
UNKNOWN = 'unknown'                    # a name without an entry (no config file either)


@dataclass(frozen=True)
class ModelInfo:
    family: str
    has_config: bool = True   # False: a name the run parameters know that has no configs/models/ file

    @property
    def vision_language(self) -> bool:
        return self.family == VISION_LANGUAGE

    @property
    def allspark(self) -> bool:
        return self.family == ALLSPARK


MODELS: dict[str, ModelInfo] = {
    'allspark-mitb5': ModelInfo(ALLSPARK),
    'allspark-mit-tiny': ModelInfo(ALLSPARK),
    'dlv3p-r101': ModelInfo(DEEPLAB),
    'dlv3p-r50': ModelInfo(DEEPLAB),
    'dlv3p-xc65': ModelInfo(DEEPLAB),
    'dlv3p-resnet-tiny': ModelInfo(DEEPLAB),
    'dpt-dinov2s': ModelInfo(DPT),
    'dpt-dinov2b': ModelInfo(DPT),
    'dpt-dinov2l': ModelInfo(DPT),
    'dpt-dinov2-tiny': ModelInfo(DPT),
    'mcvit16': ModelInfo(CLIP_ENCODER),
    'vlm-dlv3p-bn11-sk4-ft-tvit-in1k': ModelInfo(VISION_LANGUAGE),
    'vlm-dlv3p-bn12-sk4-ft-mcvitb': ModelInfo(VISION_LANGUAGE),
    'vlm-dlv3p-bn12-sk4-ftap-mcvitb': ModelInfo(VISION_LANGUAGE),
    'vlm-vlg-aspp-s2p2-sk02-ft-tinyvit': ModelInfo(VISION_LANGUAGE),
    'vlm-vlg-aspp-s2p4-sk04-ftap-mcvitb': ModelInfo(VISION_LANGUAGE),
    'vlm-vlg-aspp-s2p4-skr04-ftap-mcvitb': ModelInfo(VISION_LANGUAGE),
    'vlm-zegclip-rd-pt-vitb': ModelInfo(VISION_LANGUAGE),
    # RunParams' placeholder default (semiseg/experiments/params.py, always overridden): no config file
    'zegclip-vitb': ModelInfo(VISION_LANGUAGE, has_config=False),
}


def model_info(name: str) -> ModelInfo:
    """The entry of 'mmseg.<stem>' or '<stem>'; a name without one is of family `unknown` (building
    it then fails with the list of model configs, semiseg.models.builder.model_config_path)."""
    try:
        stem = model_stem(str(name))
    except ValueError:
        return ModelInfo(UNKNOWN)
    return MODELS.get(stem, ModelInfo(UNKNOWN))
