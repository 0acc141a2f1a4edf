"""The output folder of a batch job: whether it is one, and what killed runs left in it."""

from __future__ import annotations

from pathlib import Path

from geomm.batch._blockrun import PARTIAL
from geomm.errors import GeommError

__all__ = ["MANIFEST", "check_folder", "check_scheduler"]

MANIFEST = "geomm-batch.json"
"""The job's manifest: blocks, their keys and states."""

_LEFT_BY_KILLS = (f".{MANIFEST}.*.tmp", ".collection.json.*.tmp")
"""Temporaries of a run killed (or out of disk) between writing and renaming them."""


def check_folder(out: Path, error: type[GeommError]) -> None:
    """Refuse ``out`` unless it is new, empty or a batch folder; clear what killed runs left.

    Call it holding ``out``'s output lock: no other run is writing there, so every temporary
    of :data:`_LEFT_BY_KILLS` is a dead run's (a first manifest that a kill kept from its
    rename included: the folder is still the job's).

    Raises:
        error: ``out`` is a file, or holds files of another kind than a batch job's.
    """
    if out.exists() and not out.is_dir():
        raise error(f"{out}: is a file; give geomm batch a folder for its outputs")
    if not out.is_dir():
        return
    left = [p for pattern in _LEFT_BY_KILLS for p in out.glob(pattern)]
    for p in left:
        p.unlink(missing_ok=True)
    if not (out / MANIFEST).exists() and not left and any(
            p.name != PARTIAL for p in out.iterdir()):
        raise error(f"{out}: holds files but no {MANIFEST}, so it is not a geomm batch folder; "
                    "choose a new or empty folder")


def check_scheduler(address: str | None, error: type[GeommError]) -> None:
    """Refuse a ``--scheduler`` that is no Dask address (``tcp://host:port``, ``tls://``, or
    ``host:port``) before anything is made."""
    if address is None:
        return
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"{scheme}:// is not a scheduler's protocol")
        parse_host_port(location)
    except ValueError as exc:
        raise error(f"--scheduler {address!r}: not a Dask scheduler address ({exc}); give "
                    "tcp://HOST:PORT (the address the scheduler prints, port 8786 by "
                    "default)") from None
