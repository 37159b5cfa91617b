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
