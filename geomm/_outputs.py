"""Output folders filled atomically: files are made in a hidden work folder, then renamed in.

Nothing the user put in the folder is touched; geomm's own result files are replaced only with
``overwrite``; an interrupted run leaves only its hidden ``.geomm-work-*`` folder (cleared by the
next run), never a half-written file under a final name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from geomm.errors import GeommError

__all__ = ["OutputExistsError", "staged_outputs"]

_PREFIX = ".geomm-work-"


class OutputExistsError(GeommError, FileExistsError):
    """The output folder already holds results of an earlier run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover  (someone else's live process)
        return True
    return True


def _clear_stale(out_dir: Path) -> None:
    for p in out_dir.glob(f"{_PREFIX}*"):
        try:
            pid = int(p.name[len(_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged_outputs(out_dir: Path, names: Sequence[str], *, overwrite: bool,
                   command: str = "geomm predict") -> Iterator[Path]:
    """Yield a work folder; on success move the files named ``names`` from it into ``out_dir``.

    Raises:
        OutputExistsError: ``out_dir`` already holds one of ``names`` and not ``overwrite``,
            or ``out_dir`` is a file.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: is a file; give {command} a folder for its "
                                "outputs")
    clash = [n for n in names if (out_dir / n).exists()]
    if clash and not overwrite:
        raise OutputExistsError(f"{out_dir}: already holds results ({', '.join(clash)}); "
                                f"pass --overwrite to replace them, or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale(out_dir)
    work = out_dir / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        yield work
        for n in names:
            if (work / n).exists():
                os.replace(work / n, out_dir / n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
