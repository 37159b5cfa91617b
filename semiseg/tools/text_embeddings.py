"""Compute a CLIP text embedding file.

    python -m semiseg.tools.text_embeddings --dataset pascal --variant concept4_single [...] \
        [--clip openai|/path/to/ViT-B-16.pt] [--out DIR] [--data-root DIR]

Writes ``DIR/{prefix}_{variant}.npy`` (default DIR: ``~/.cache/semiseg/text_embedding``), the
place :func:`semiseg.models.text_embeddings.resolve_text_embedding` searches.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from semiseg.models import text_embeddings as T
from semiseg.utils.cli import OneLineParser, output_dir


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.text_embeddings', description=__doc__.split('\n')[0])
    parser.add_argument('--dataset', required=True,
                        help='pascal, cityscapes, coco, ade, or a custom name (needs --data-root)')
    parser.add_argument('--variant', nargs='+', default=['single'],
                        help='one or more of single, concept<k>_single, conceptavg<k>_single')
    parser.add_argument('--clip', default='openai',
                        help="'openai' (open_clip download) or a CLIP checkpoint path")
    parser.add_argument('--out', type=output_dir, default=None, help=f'output folder (default {T.cache_dir()})')
    parser.add_argument('--data-root', default=None, help='folder with classes.txt (custom datasets)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    out_dir = Path(args.out).expanduser() if args.out else T.cache_dir()
    try:
        for variant in args.variant:  # validate every name before loading CLIP
            T.parse_variant(variant)
        model = T.load_clip_text_model(args.clip)
        for variant in args.variant:
            array = T.compute_text_embedding(args.dataset, variant, model, args.data_root)
            path = T.save_embedding(array, out_dir / T.embedding_filename(args.dataset, variant))
            print(f'wrote {path} {array.shape} float16')
    except ValueError as err:  # TextEmbeddingError / WeightsError: already say how to fix
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
