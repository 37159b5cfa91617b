"""What every dataset converter shares: reading official archives member by member, one-line errors for
bad archives, the resumable parallel writer with its progress bar, the disk-space check, PNG encoding.

Nothing is extracted to a temporary folder: tar and zip members are read one at a time and their bytes
handed to a process pool, which converts and writes each output atomically (`semiseg.utils.files`).
Outputs already on disk are checked (size or PNG header) and skipped, so a stopped run resumes.
"""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from semiseg.data.errors import DataError
from semiseg.utils.files import atomic_write_bytes, is_temp_file

logger = logging.getLogger(__name__)


class ArchiveError(DataError):
    """An archive that is not the official file (wrong file, truncated, another release)."""


@dataclass(frozen=True)
class ArchiveSpec:
    """One official archive a converter reads."""

    filename: str   # the official file name (how --from finds it)
    kind: str       # 'tar' or 'zip'
    what: str       # what it should hold, for error messages


@dataclass(frozen=True)
class Task:
    """One output file: `convert(payload)` gives its bytes (None: the payload is the bytes, a copy)."""

    out: Path
    payload: Any
    source: str                                  # archive and member, for error messages
    convert: Callable[[Any], bytes] | None = None


SKIPPED = object()   # yielded for an output that is already on disk and checked


@dataclass
class RunStats:
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def add(self, other: RunStats) -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.failed += other.failed


# ---------------------------------------------------------------- archives

def _sniff(path: Path) -> str:
    """The container format from the file's first bytes: 'zip', 'gz', 'bz2', 'xz', 'tar' or ''."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if head[:4] in (b'PK\x03\x04', b'PK\x05\x06'):
        return 'zip'
    if head[:2] == b'\x1f\x8b':
        return 'gz'
    if head[:3] == b'BZh':
        return 'bz2'
    if head[:6] == b'\xfd7zXZ\x00':
        return 'xz'
    if head[257:262] == b'ustar':
        return 'tar'
    return ''


class Archive:
    """An official tar or zip archive, read member by member (`stream`)."""

    def __init__(self, path: str | os.PathLike, spec: ArchiveSpec) -> None:
        self.path = Path(path)
        self.spec = spec
        if not self.path.is_file():
            raise ArchiveError(f'{self.path}: not found; expected {spec.filename} ({spec.what})')
        fmt = _sniff(self.path)
        if spec.kind == 'zip' and fmt != 'zip':
            self.fail(f'not a zip archive ({fmt or "unknown format"})')
        if spec.kind == 'tar' and fmt not in ('tar', 'gz', 'bz2', 'xz'):
            self.fail(f'not a tar archive ({fmt or "unknown format"})')
        self.compressed = fmt in ('gz', 'bz2', 'xz')
        self._zip: zipfile.ZipFile | None = None
        self._listing: list[tuple[str, int]] | None = None
        if fmt == 'zip':
            with self.errors():
                self._zip = zipfile.ZipFile(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def fail(self, reason: str) -> None:
        raise ArchiveError(f'{self.path}: {reason}; expected {self.spec.filename}, {self.spec.what}')

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Reading errors become one `ArchiveError` line naming the archive and what was expected."""
        try:
            yield
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
            reason = ' '.join(str(err).split()) or type(err).__name__
            self.fail(f'unreadable, truncated or corrupt ({reason})')

    def listing(self) -> list[tuple[str, int]] | None:
        """(name, size) of every file member, or None where listing would decompress the whole
        archive (a compressed tar: its members are counted while streaming instead)."""
        if self._zip is not None:
            return [(i.filename, i.file_size) for i in self._zip.infolist() if not i.is_dir()]
        if self.compressed:
            return None
        with self.errors(), tarfile.open(self.path, 'r:') as tar:
            return [(m.name, m.size) for m in tar.getmembers() if m.isfile()]

    def read(self, name: str) -> bytes:
        """One member's bytes (zip archives: random access)."""
        assert self._zip is not None, 'random access needs a zip archive'
        with self.errors():
            return self._zip.read(name)

    def open(self, name: str) -> io.BufferedIOBase:
        """A stream of one zip member (large json files are parsed from it without a copy)."""
        assert self._zip is not None, 'random access needs a zip archive'
        with self.errors():
            return self._zip.open(name)

    def stream(self, want: Callable[[str, int], bool]) -> Iterator[tuple[str, int, bytes | None]]:
        """(name, size, bytes) of every file member in archive order; bytes are read only where
        `want(name, size)` is true (None otherwise). Errors name the archive."""
        with self.errors():
            if self._zip is not None:
                for info in self._zip.infolist():
                    if not info.is_dir():
                        data = self._zip.read(info) if want(info.filename, info.file_size) else None
                        yield info.filename, info.file_size, data
                return
            with tarfile.open(self.path, 'r|*' if self.compressed else 'r:') as tar:
                for member in tar:
                    if member.isfile():
                        data = None
                        if want(member.name, member.size):
                            f = tar.extractfile(member)
                            data = f.read() if f is not None else b''
                            if len(data) != member.size:
                                raise EOFError(f'member {member.name} ends after {len(data)} of '
                                               f'{member.size} bytes')
                        yield member.name, member.size, data


def archive_tasks(archive: Archive, plan: Callable[[str, int], Any],
                  seen: list[str] | None = None) -> Iterator[Task | object]:
    """The tasks of one pass over `archive`. `plan(name, size)` says what a member becomes: a `Task`
    (its payload filled with the member's bytes), SKIPPED (output already done: the bytes are not read)
    or None (not an output). Every member name is appended to `seen` (for counting)."""
    planned: dict[str, Any] = {}

    def want(name: str, size: int) -> bool:
        what = plan(name, size)
        if what is not None:
            planned[name] = what
        return isinstance(what, Task)

    for name, _, data in archive.stream(want):
        if seen is not None:
            seen.append(name)
        what = planned.pop(name, None)
        if what is SKIPPED:
            yield SKIPPED
        elif what is not None:
            yield replace(what, payload=data)


def check_counts(archive: Archive, names: Iterable[str], groups: dict[str, tuple[re.Pattern, int]]) -> None:
    """Each group's member count must equal the official release's (else: a different or partial release)."""
    names = list(names)
    for label, (pattern, expected) in groups.items():
        found = sum(1 for n in names if pattern.match(n))
        if found == 0:
            archive.fail(f'no {label} in it (members like {pattern.pattern})')
        if found != expected:
            archive.fail(f'{found} {label} where the official release has {expected}: a different or '
                         'incomplete release')


def find_archives(specs: Iterable[ArchiveSpec], paths: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """{spec.filename: path} from --from arguments (archive files, or folders holding them)."""
    specs = list(specs)
    wanted = {s.filename: s for s in specs}
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for name in wanted:
                if (path / name).is_file():
                    found.setdefault(name, path / name)
        elif path.is_file():
            if path.name not in wanted:
                raise ArchiveError(f'{path}: not one of the archives this dataset needs; expected '
                                   + ', '.join(f'{s.filename} ({s.what})' for s in specs))
            found[path.name] = path
        else:
            raise ArchiveError(f'{path}: no such file or folder')
    missing = [s for s in specs if s.filename not in found]
    if missing:
        raise ArchiveError('missing archive(s): ' + ', '.join(f'{s.filename} ({s.what})' for s in missing)
                           + '; pass each with --from (a file, or the folder that holds it)')
    return found


# ---------------------------------------------------------------- outputs

def png_bytes(mask: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """A uint8 label mask as PNG bytes: mode P with `palette` ((256, 3) uint8), else mode L."""
    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8))
    if palette is not None:   # putpalette turns mode L into P with the same indices
        img.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format='PNG')
    return buf.getvalue()


def decode_labels(data: bytes) -> np.ndarray:
    """A single-channel PNG's label ids (palette indices for mode P) as a uint8 array."""
    img = Image.open(io.BytesIO(data))
    if img.mode not in ('L', 'P'):
        raise ValueError(f'mask has mode {img.mode}, expected a single-channel PNG (L or P)')
    return np.array(img, dtype=np.uint8)


def copy_done(out: Path, size: int) -> bool:
    """A copied member is done when a file of its size is in place (writes are atomic)."""
    try:
        return out.stat().st_size == size
    except OSError:
        return False


def png_done(out: Path) -> bool:
    """A converted mask is done when a readable PNG header is in place (writes are atomic)."""
    if not out.is_file():
        return False
    try:
        with Image.open(out) as img:
            return img.format == 'PNG' and img.width > 0 and img.height > 0
    except (OSError, ValueError, SyntaxError):
        return False


def remove_temp_files(folder: Path) -> int:
    """Delete temporaries left by a killed run (atomic writes name them .<name>.<random>.tmp)."""
    removed = 0
    if folder.is_dir():
        for root, _, files in os.walk(folder):
            for name in files:
                if is_temp_file(name):
                    Path(root, name).unlink(missing_ok=True)
                    removed += 1
    return removed


def check_space(out: Path, needed: int, dataset: str) -> None:
    """Print the space the preparation still needs; stop before writing when the disk has less."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    print(f'{dataset}: about {needed / 1e9:.2f} GB still to write to {out} ({free / 1e9:.2f} GB free)')
    if needed > free:
        raise DataError(f'{out}: {dataset} needs about {needed / 1e9:.2f} GB but the disk has '
                        f'{free / 1e9:.2f} GB free; free some space or pass another --data-root')


def _run(task: Task) -> str | None:
    """Convert and write one output (in a worker); an error comes back as one line."""
    try:
        data = task.payload if task.convert is None else task.convert(task.payload)
        atomic_write_bytes(task.out, data, fsync=False)   # one os.sync() at the end of the pass
    except Exception as err:   # noqa: BLE001 - one bad member is reported, the others go on
        return f'{task.source}: {" ".join(str(err).split()) or type(err).__name__}'
    return None


def execute(tasks: Iterable[Task | object], workers: int, desc: str, total: int | None = None) -> RunStats:
    """Run the tasks (SKIPPED entries only advance the bar) on `workers` processes, at most a few
    per worker in flight so memory stays bounded, with a progress bar."""
    stats = RunStats()
    bar = tqdm(total=total, desc=desc, unit='file', dynamic_ncols=True, disable=None)

    def done(error: str | None) -> None:
        if error is None:
            stats.written += 1
        else:
            stats.failed.append(error)
        bar.update()

    try:
        if workers <= 1:
            for task in tasks:
                if task is SKIPPED:
                    stats.skipped += 1
                    bar.update()
                else:
                    done(_run(task))
            return stats
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: set = set()
            for task in tasks:
                if task is SKIPPED:
                    stats.skipped += 1
                    bar.update()
                    continue
                pending.add(pool.submit(_run, task))
                if len(pending) >= 4 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        done(fut.result())
            for fut in pending:
                done(fut.result())
        return stats
    finally:
        bar.close()
        os.sync()   # the pass's files reach the disk together (per-file fsync costs ~7 ms each)


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)
