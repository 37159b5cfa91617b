"""Convert OpenAI / open_clip CLIP ViT-B/16 weights to the MaskCLIP backbone checkpoint.

    python -m semiseg.tools.convert_clip --src openai|/path/to/ViT-B-16.pt \
        --out pretrained/clip2mmseg_ViT16_clip_backbone.pth

The output is ``{'meta': {}, 'state_dict': ...}`` with ``backbone.*`` keys plus ``proj.weight``
(the layout of google-research/semivl ``third_party/maskclip/convert_clip_weights.py``), loadable
with :func:`semiseg.models.weights.load_clip_backbone_weights`.
"""
from __future__ import annotations

import logging
import sys

from semiseg.models import weights as W
from semiseg.utils.cli import OneLineParser, output_file


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.convert_clip', description=__doc__.split('\n')[0])
    parser.add_argument('--src', default='openai',
                        help="'openai' (open_clip download) or an OpenAI/open_clip checkpoint path")
    parser.add_argument('--out', type=output_file, default='pretrained/clip2mmseg_ViT16_clip_backbone.pth')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    try:
        sd = W.clip_backbone_state_dict(args.src)
    except W.WeightsError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    path = W.save_converted(sd, args.out)
    print(f'wrote {path} ({len(sd)} tensors)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
