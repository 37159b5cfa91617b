"""What every command line of ours shares: exit codes, the one-line argument parser, the usage error,
and the checks of output paths.

`experiments.py`, `python -m semiseg.engine.run` and the tools (`predict`, `eval`, ...) all answer
bad input with one line and these codes (README "What happens when…").
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from semiseg.utils.run_files import RESULTS_FILE

EXIT_OK = 0
EXIT_FAILED = 1        # a run (or some images) failed; the others are done
EXIT_USAGE = 2         # bad arguments or inputs: nothing was done
EXIT_INTERRUPTED = 3   # stopped on request (SIGTERM, SIGUSR1, Ctrl-C): the same command resumes
EXIT_ABORTED = 130     # a second Ctrl-C: stopped at once, without saving


class UsageError(ValueError):
    """Bad arguments or inputs: one line, exit code 2, nothing written."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f'{self.prog}: error: {message} (see --help)\n')


def check_output_dir(out: Path, option: str, inputs: Iterable[Path] = (), recursive: bool = False) -> Path:
    """`out` as a folder we may write into: not an existing file, not one of the input folders and,
    when those are read recursively, not inside one (the next call would read our outputs as inputs)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f'{option} {out} exists and is not a folder; pass a folder (it is created if missing)')
    resolved = out.resolve()
    for folder in inputs:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            continue
        inner = folder.resolve()
        if resolved == inner:
            raise UsageError(f'{option} {out} is the input folder {folder}: the outputs would be read as inputs '
                             f'next time (and may overwrite them); write them to another folder')
        if recursive and inner in resolved.parents:
            raise UsageError(f'{option} {out} is inside the input folder {folder}, which is read with --recursive: '
                             f'the next call would read its own outputs; write them outside {folder}')
    return out


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path('/')


def output_file(text: str) -> Path:
    """argparse `type` of an option naming a file we write: not a folder, and creatable (no file
    where one of its folders should be); refused while parsing, before any work."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f'{path} is a folder; give a file name, e.g. {path / RESULTS_FILE}')
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f'{ancestor} is a file, so {path} cannot be created under it')
    return path


def output_dir(text: str) -> Path:
    """argparse `type` of an option naming a folder we write into (created when missing): not an
    existing file, and no file where one of its parents should be."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f'{path} exists and is not a folder; pass a folder (it is created if missing)')
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f'{ancestor} is a file, so the folder {path} cannot be created under it')
    return path
