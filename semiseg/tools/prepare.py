"""Prepare a dataset folder from the official archives, or verify one against its split lists.

    python -m semiseg.tools.prepare pascal --from VOCtrainval_11-May-2012.tar benchmark.tgz [--data-root ~/data]
    python -m semiseg.tools.prepare pascal --verify [--data-root ~/data]

`--from` takes the archive files, or folders holding them (see the README's Data section for each
dataset's archives). Outputs go to `<data-root>/<folder>/` (e.g. ~/data/voc/), one file at a time,
atomically; a rerun skips what is done. `--verify` checks every image and mask of every split list
(fetch the lists first with semiseg.tools.fetch_splits) and exits 1 when anything is missing or wrong;
it works for custom datasets too (`--data-root` is then the folder holding classes.txt, or its parent).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from semiseg.data.datasets import DATASETS, dataset_info
from semiseg.data.errors import DataError
from semiseg.data.prepare import CONVERTERS, prepare_dataset
from semiseg.data.prepare.common import default_workers
from semiseg.data.prepare.verify import verify_dataset
from semiseg.utils.cli import OneLineParser


def dataset_folder(dataset: str, data_root: str) -> Path:
    """A built-in dataset's folder under the data root; a custom one's folder (holding classes.txt)."""
    root = Path(data_root).expanduser()
    if dataset in DATASETS:
        return root / DATASETS[dataset].folder
    return root if (root / 'classes.txt').is_file() else root / dataset


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.prepare', description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', help=f'{", ".join(CONVERTERS)}, or a custom dataset (--verify only)')
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument('--from', dest='sources', nargs='+', metavar='PATH',
                        help='the official archives (files, or folders holding them)')
    action.add_argument('--verify', action='store_true',
                        help='check the dataset folder against its split lists')
    parser.add_argument('--data-root', default='~/data',
                        help='folder holding the dataset folders (default ~/data)')
    parser.add_argument('--workers', type=int, default=default_workers(),
                        help='processes converting and checking files (default: the CPUs)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    try:
        if args.sources:
            out, stats = prepare_dataset(args.dataset, args.sources, args.data_root, args.workers)
            print(f'{args.dataset}: {stats.written} files written, {stats.skipped} already done, in {out}')
            print(f'next: python -m semiseg.tools.fetch_splits {args.dataset} --data-root {args.data_root}, '
                  f'then python -m semiseg.tools.prepare {args.dataset} --verify --data-root {args.data_root}')
            return 0
        folder = dataset_folder(args.dataset, args.data_root)
        info = dataset_info(args.dataset, folder)
        report = verify_dataset(info, folder, args.workers)
    except DataError as err:
        print(f'error: {" ".join(str(err).split())}', file=sys.stderr)
        return 1
    print('\n'.join(report.lines()))
    return 0 if report.ok else 1


if __name__ == '__main__':
    sys.exit(main())
