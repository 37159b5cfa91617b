"""Graceful stop requests: SIGTERM / SIGUSR1 (Slurm pre-emption, `scancel`, torchrun) and a first
Ctrl-C (SIGINT) set a flag; a second Ctrl-C aborts at once (KeyboardInterrupt, nothing saved).

The trainer polls `stop_requested()` after every iteration and between evaluation batches, so a
stop lands where a consistent `latest.pth` can be written. Handlers only set a flag: no logging or
I/O happens inside a signal handler.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from semiseg.utils.run_files import RESULTS_FILE, STATE_FILE

logger = logging.getLogger(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

_stop = threading.Event()
_reason: list[str] = []


def request_stop(reason: str = 'stop requested') -> None:
    """Ask the running training loop to save `latest.pth` and stop after the current iteration."""
    _reason[:] = [reason]
    _stop.set()


def stop_requested() -> bool:
    """True once a stop was requested (by a signal or `request_stop`)."""
    return _stop.is_set()


def stop_reason() -> str:
    """Why the stop was requested ('' when it was not)."""
    return _reason[0] if _reason else ''


def clear_stop() -> None:
    """Forget a previous stop request (done when a new training starts)."""
    _stop.clear()
    _reason.clear()


def _handler(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    if signum == signal.SIGINT:
        if _stop.is_set():
            raise KeyboardInterrupt   # the second Ctrl-C: abort without saving
        request_stop('received SIGINT (Ctrl-C); press it again to abort without saving')
        return
    request_stop(f'received {signal.Signals(signum).name}')


@contextlib.contextmanager
def stop_signal_handlers(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Install the stop handlers for the duration of training; restore the previous ones after.

    Outside the main thread Python cannot install handlers; `request_stop()` still works there.
    """
    if threading.current_thread() is not threading.main_thread():
        logger.debug('not in the main thread: signal handlers not installed')
        yield
        return
    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, _handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------- stops outside the training loop
class StopBeforeTraining(BaseException):
    """A stop signal that came while no training loop was there to save (start-up, between runs).

    A BaseException, so the trainer's `except Exception` does not record it as a failure; the entry
    points catch it, mark the run folder interrupted (`mark_interrupted`) and exit with code 3.
    """


def _startup_handler(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    reason = f'received {signal.Signals(signum).name}'
    for sig in STOP_SIGNALS:   # one-shot: a second signal while we wind down only sets the flag
        signal.signal(sig, _handler)
    request_stop(reason)
    raise StopBeforeTraining(reason)


@contextlib.contextmanager
def startup_stop_handlers(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """From process start on: a stop ends the process at once with `StopBeforeTraining` (exit code 3).

    Without it SIGTERM in the first seconds killed the process with 143 and no word. The trainer's
    own `stop_signal_handlers` replace these while a run is set up and trained (a stop is then saved
    in latest.pth), and put them back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for sig in signals:
            previous[sig] = signal.signal(sig, _startup_handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait_forwarding_stops(process) -> int:
    """Wait for a training child process (torchrun); a stop sent to us reaches it as SIGTERM, so it
    saves latest.pth and exits with 3 (a Ctrl-C in the terminal reaches it directly as well)."""
    def forward(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)

    if threading.current_thread() is not threading.main_thread():
        return process.wait()
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        return process.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def mark_interrupted(run_dir, reason: str) -> None:
    """Record `interrupted` in the run folder's state.json (kept fields: what an earlier start wrote);
    nothing when the folder does not exist or the run has finished."""
    import os
    import socket
    import time
    from pathlib import Path

    from semiseg.utils.files import atomic_write_json
    from semiseg.utils.safe_yaml import read_json
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / RESULTS_FILE).exists():
        return
    path = run_dir / STATE_FILE
    try:
        state = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        state = {}
    state = state if isinstance(state, dict) else {}
    if state.get('state') == 'finished':
        return
    state.update(state='interrupted', error=f'{reason} outside the training loop; the same command resumes the run',
                 host=socket.gethostname(), pid=os.getpid(), updated=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
    try:
        atomic_write_json(path, state)
    except OSError as err:
        logger.warning('could not write %s (%s)', path, err)
