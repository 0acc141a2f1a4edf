"""Output folders filled atomically: files are made in a hidden work folder, then renamed in.

Nothing the user put in the folder is touched; geomm's own result files are replaced only with
``overwrite``; an interrupted run leaves only its hidden ``.geomm-work-*`` folder (cleared by the
next run), never a half-written file under a final name. One run writes a folder at a time
(:func:`geomm._lock.output_lock`).

The set of files is committed with a journal: before the first rename, ``.geomm-commit`` names
the work folder; after the last it is removed. A run killed between two renames leaves the
journal, and the next run into the folder (or :func:`recover`, which readers call) finishes the
renames from the complete work folder: the folder holds the old set or the new one, never a
mix of two runs once anyone looks.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from geomm._lock import missing_folders, output_lock, pid_alive, remove_empty
from geomm.errors import GeommError

__all__ = ["OutputExistsError", "drop_partials", "partial_path", "recover", "settle",
           "staged_outputs"]

PARTIAL_TAG = ".geomm-partial-"
"""In the name of a single output file being written beside its final name."""

_PREFIX = ".geomm-work-"
JOURNAL = ".geomm-commit"


class OutputExistsError(GeommError, FileExistsError):
    """The output folder already holds results of an earlier run."""


def partial_path(out: Path) -> Path:
    """A private name beside the output file ``out`` to write it under, then rename over it
    (one rename: a reader sees the old file or the new one)."""
    return out.with_name(f".{out.name}{PARTIAL_TAG}{uuid.uuid4().hex[:8]}{out.suffix}")


def drop_partials(out: Path) -> None:
    """Remove what killed writers of ``out`` left under :func:`partial_path` names (with
    SQLite's -journal/-wal/-shm files); call it holding ``out``'s lock."""
    for p in out.parent.glob(f".{glob.escape(out.name)}{PARTIAL_TAG}*"):
        p.unlink(missing_ok=True)


def recover(out_dir: Path) -> None:
    """Finish the commit of a run that was killed between its renames (see the module doc)."""
    journal = out_dir / JOURNAL
    try:
        doc = json.loads(journal.read_text())
    except (OSError, ValueError):
        return
    work = out_dir / str(doc.get("work", ""))
    if doc.get("work") and work.is_dir() and work.parent == out_dir:
        _commit(out_dir, work, [str(n) for n in doc.get("names", [])],
                [str(n) for n in doc.get("drop", [])])
        shutil.rmtree(work, ignore_errors=True)
    journal.unlink(missing_ok=True)


def settle(path: Path) -> None:
    """Before reading ``path`` (e.g. a ``classes.tif``): finish the commit of a run that was
    killed while renaming its files into that folder, so the reader sees one run's set.

    Raises:
        OutputBusyError: a run is writing that folder right now.
    """
    folder = Path(path).parent
    if (folder / JOURNAL).exists():
        with output_lock(folder, "geomm (finishing an interrupted commit)"):
            recover(folder)


def _commit(out_dir: Path, work: Path, made: Sequence[str], drop: Sequence[str]) -> None:
    for n in made:
        if (work / n).exists():
            os.replace(work / n, out_dir / n)
    for n in drop:
        target = out_dir / n
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _clear_stale(out_dir: Path) -> None:
    recover(out_dir)
    for p in out_dir.glob(f"{_PREFIX}*"):
        try:
            pid = int(p.name[len(_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged_outputs(out_dir: Path, names: Sequence[str], *, overwrite: bool,
                   command: str = "geomm predict", record: str | None = None
                   ) -> Iterator[Path]:
    """Yield a work folder; on success move the files named ``names`` from it into ``out_dir``.

    ``record``: the file of ``names`` that every run writes; where files of ``names`` are in
    ``out_dir`` without it, geomm did not write them, and not even ``overwrite`` replaces them.

    Raises:
        OutputExistsError: ``out_dir`` already holds one of ``names`` and not ``overwrite``
            (or not ``record``), or ``out_dir`` is a file.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: is a file; give {command} a folder for its "
                                "outputs")
    clash = [n for n in names if (out_dir / n).exists()]
    if clash and record is not None and not (out_dir / record).exists():
        raise OutputExistsError(f"{out_dir}: holds {', '.join(clash)}, which {command} did not "
                                f"write (no {record} beside it), so not even --overwrite "
                                "replaces it; move it away or choose another folder")
    if clash and not overwrite:
        raise OutputExistsError(f"{out_dir}: already holds results ({', '.join(clash)}); "
                                f"pass --overwrite to replace them, or choose another folder")
    new_folders = missing_folders(out_dir)
    with output_lock(out_dir, command):
        out_dir.mkdir(parents=True, exist_ok=True)
        _clear_stale(out_dir)
        work = out_dir / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            yield work
            made = [n for n in names if (work / n).exists()]
            # geomm's files of an earlier run that this one did not make go too: no mix
            drop = [n for n in names if n not in made and (out_dir / n).exists()]
            journal = out_dir / JOURNAL
            tmp = work / JOURNAL
            tmp.write_text(json.dumps({"work": work.name, "names": made, "drop": drop}))
            os.replace(tmp, journal)
            _commit(out_dir, work, made, drop)
            journal.unlink()
        finally:
            shutil.rmtree(work, ignore_errors=True)
            remove_empty(new_folders)  # a failed run leaves no empty folder of its making
