"""Reading text files as editors write them: UTF-8 with or without a byte-order mark, any line ending.

Windows editors add a BOM and write `\\r\\n`, old Mac tools write `\\r`; all three read the same here.
Anything that is not UTF-8 (UTF-16, Latin-1, a binary file) is refused with the file and the line
of the first bad byte, instead of turning into odd class names or a message about something else.
"""
from __future__ import annotations

import codecs
import os
from pathlib import Path

MAX_TEXT_BYTES = 64 * 1024 * 1024   # a split list of a few million lines; bigger is not a text file of ours


class TextFileError(ValueError):
    """A text file that is not UTF-8, too large, or not a readable file; the message names it."""


def _describe(what: str, path: Path) -> str:
    return f'{what} {path}' if what else str(path)


def decode_text(data: bytes, path: str | os.PathLike, what: str = '') -> str:
    """`data` as text: BOM dropped, line endings made `\\n`; non-UTF-8 refused with the line."""
    label = _describe(what, Path(path))
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise TextFileError(f'{label} is UTF-16 text; save it as UTF-8 (with or without BOM)')
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b'\n') + before.count(b'\r') - before.count(b'\r\n') + 1
        raise TextFileError(f'{label} line {line} is not UTF-8 (byte 0x{data[e.start]:02x}); '
                            f'save the file as UTF-8') from None
    if '\x00' in text:
        line = text[:text.index('\x00')].count('\n') + 1
        raise TextFileError(f'{label} line {line} holds a NUL byte: it is not a text file')
    return text.replace('\r\n', '\n').replace('\r', '\n')


def read_bytes_capped(path: str | os.PathLike, what: str = '', max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; a folder or a huge file is refused by name."""
    path = Path(path)
    label = _describe(what, path)
    if path.is_dir():
        raise TextFileError(f'{label} is a folder; pass a file')
    if not path.exists():
        raise FileNotFoundError(f'{label} does not exist')
    size = path.stat().st_size
    if size > max_bytes:
        raise TextFileError(f'{label} is {size} bytes, over the limit of {max_bytes} for this kind of file; '
                            f'is it the right file?')
    with open(path, 'rb') as f:
        data = f.read(max_bytes + 1)   # a file that grows (or a FIFO) cannot push us past the cap
    if len(data) > max_bytes:
        raise TextFileError(f'{label} is over the limit of {max_bytes} bytes for this kind of file')
    return data


def read_text(path: str | os.PathLike, what: str = '', max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file (BOM optional, any line ending) as a str with `\\n` line endings."""
    return decode_text(read_bytes_capped(path, what, max_bytes), path, what)


def read_lines(path: str | os.PathLike, what: str = '', max_bytes: int = MAX_TEXT_BYTES) -> list[str]:
    """The lines of a text file, without their line endings (a last empty line is not a line)."""
    text = read_text(path, what, max_bytes)
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines
