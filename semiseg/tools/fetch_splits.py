"""Fetch the official split lists of a dataset and verify their checksums.

    python -m semiseg.tools.fetch_splits pascal [--data-root ~/data] [--from DIR] [--force]
    python -m semiseg.tools.fetch_splits pascal --splits-dir /datasets/VOC2012/splits

Writes `{data_root}/{folder}/splits/...` (e.g. ~/data/voc/splits/92/labeled.txt), or exactly
`--splits-dir` when the dataset folder has another name. Without
`--from` the lists are downloaded from the upstream repositories (third_party/splits.py); with
`--from DIR` they are copied from a local folder holding the same layout (e.g.
../shared/reference/splits/pascal). Every file is checked against the recorded sha256 before
anything is written; a mismatch stops with an error and writes nothing.
"""
from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from semiseg.data.datasets import DATASETS
from semiseg.data.errors import DataError
from semiseg.utils.cli import OneLineParser
from semiseg.utils.files import atomic_write_bytes
from third_party import splits as official

logger = logging.getLogger(__name__)


def _download(link: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(link, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f'could not download {link}: {err}; without internet, copy the lists '
                        'from a local folder with --from DIR') from err


def _read_source(dataset: str, rel: str, source_dir: Path | None) -> bytes | None:
    """The bytes of one list file, or None when a local folder lacks an unverified file."""
    if source_dir is None:
        return _download(official.url(dataset, rel))
    path = source_dir / rel
    if path.is_file():
        return path.read_bytes()
    return None


def fetch_splits(dataset: str, data_root: str | Path = '~/data',
                 source_dir: str | Path | None = None, force: bool = False,
                 splits_dir: str | Path | None = None) -> Path:
    """Download (or copy from `source_dir`) and verify the official lists; returns the splits dir
    (`splits_dir` if given, else `{data_root}/{folder}/splits`).

    Raises `DataError` on a checksum mismatch, a missing source file, a download failure, or an
    existing different file in the destination (unless `force`).
    """
    if dataset not in official.OFFICIAL_DATASETS:
        raise DataError(f'no official split lists for {dataset!r}; known: '
                        f'{", ".join(official.OFFICIAL_DATASETS)}. Custom datasets write their '
                        'own {data_root}/splits/<split>/{labeled,unlabeled}.txt and splits/val.txt')
    dest = (Path(splits_dir).expanduser() if splits_dir is not None
            else Path(data_root).expanduser() / DATASETS[dataset].folder / 'splits')
    src = Path(source_dir).expanduser() if source_dir is not None else None
    if src is not None and not (src / 'val.txt').is_file() and (src / dataset).is_dir():
        src = src / dataset     # accept the folder above the per-dataset folders too
    if src is not None and not src.is_dir():
        raise DataError(f'--from folder {src} does not exist; it must hold the lists of '
                        f'{dataset} laid out as <split>/labeled.txt, val.txt, ...')

    verified: dict[str, bytes] = {}
    skipped: list[str] = []
    for rel, sha in official.expected_files(dataset).items():
        data = _read_source(dataset, rel, src)
        if data is None:
            if sha is None:
                skipped.append(rel)
                continue
            raise DataError(f'{src / rel} not found: --from {src} must hold every official list '
                            f'of {dataset} (missing {rel})')
        if sha is None:
            logger.warning('%s/%s: no recorded checksum (absent from the reference lists); '
                           'not verified', dataset, rel)
        elif official.sha256_bytes(data) != sha:
            origin = src / rel if src is not None else official.url(dataset, rel)
            raise DataError(f'checksum mismatch for {origin}: sha256 {official.sha256_bytes(data)}'
                            f', expected {sha}. The file is corrupt or not the official list; '
                            'nothing was written. Re-fetch it from upstream (or fix --from).')
        target = dest / rel
        if target.is_file() and target.read_bytes() != data and not force:
            raise DataError(f'{target} exists and differs from the official list; move it away '
                            'or pass --force to overwrite it')
        verified[rel] = data

    for rel, data in verified.items():
        atomic_write_bytes(dest / rel, data)
    if skipped:
        logger.warning('%d unverified list(s) not found in %s: %s. %s', len(skipped), src,
                       ', '.join(skipped), official.UNVERIFIED_NOTE)
    logger.info('wrote %d split lists of %s to %s', len(verified), dataset, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog='python -m semiseg.tools.fetch_splits', description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', choices=official.OFFICIAL_DATASETS)
    parser.add_argument('--data-root', default='~/data',
                        help='folder holding the dataset folders (default ~/data); the lists go '
                             'to <data-root>/<folder>/splits/')
    parser.add_argument('--from', dest='source_dir', default=None,
                        help='copy from this local folder instead of downloading')
    parser.add_argument('--splits-dir', default=None,
                        help='write the lists exactly here instead (e.g. <dataset root>/splits)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite existing lists that differ')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    try:
        dest = fetch_splits(args.dataset, args.data_root, args.source_dir, args.force,
                            args.splits_dir)
    except DataError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'{args.dataset} split lists verified and written to {dest}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
