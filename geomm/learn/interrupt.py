"""Training that Ctrl-C can stop cleanly: the interruption reaches geomm's caller, and what
the run had begun to write is removed."""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["fit_or_interrupt", "removed_on_failure"]


def fit_or_interrupt(trainer: Any, *args: Any, **kwargs: Any) -> None:
    """``trainer.fit(*args, **kwargs)``, where Ctrl-C raises :class:`KeyboardInterrupt`.

    Lightning catches Ctrl-C itself, tidies up, ignores SIGINT from then on and exits 1
    (``SystemExit``): no caller could remove what the run wrote or say it was interrupted.
    Here the SIGINT handler is put back and the interruption goes on up."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


@contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """Remove ``folder``, if it is new, when the block fails or is interrupted (one that
    was there before is left alone)."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise
