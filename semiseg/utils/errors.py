"""One-line descriptions of failures, for the console (the traceback goes to the run's train.log)."""
from __future__ import annotations

import errno
from pathlib import Path

from semiseg.utils.run_files import LOG_FILE


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely, is damaged, or does not fit; the message says why.
    (Here, not in checkpoint_io, so the CLI can catch it without importing torch.)"""


# our errors carry their cause and the fix in their message: shown as they are
SELF_EXPLAINING = ('DataError', 'CheckpointError', 'TrainingFailed', 'RunLocked', 'WeightsError',
                   'TextEmbeddingError', 'ValueError', 'FileNotFoundError', 'KeyError', 'UnknownModel',
                   'TextFileError', 'FileLimitError', 'YamlLimitError')


def failure_message(error: BaseException, run_dir: Path) -> str:
    """One line saying what went wrong: the error's own message for the errors we raise with a cause
    and a fix, the type and message otherwise (tracebacks are in train.log)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ''
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return (f'disk full while writing in {run_dir}; the previous latest.pth is intact: free some space and '
                'resume with the same command')
    if type(error).__name__ in SELF_EXPLAINING:
        return text
    return f'{type(error).__name__}: {text} (traceback in {Path(run_dir) / LOG_FILE})'
