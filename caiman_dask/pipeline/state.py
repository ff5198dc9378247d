"""The run folder's memory: which stages are done for which inputs and parameters.

``OUTDIR/run.json`` maps each stage to the key it was completed with. A stage's key
hashes its inputs' identity, the parameters that affect it and the key of the stage
before it, so a rerun redoes exactly the stages whose inputs or parameters changed
(and everything after them) and nothing else. ``OUTDIR/.lock`` keeps two runs from
writing the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import socket
import time
from typing import Any

from caiman_dask.errors import StoreExistsError

LOCK = ".lock"
MANIFEST = "run.json"


def stage_key(**parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: str) -> dict[str, Any]:
    """What identifies an input file: its path, size and modification time."""
    try:
        stat = os.stat(path)
    except OSError:
        return {"path": path}  # a URL or glob: the path is all we have cheaply
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class RunFolder:
    """The output folder of one run: stage records, lock, paths of its parts."""

    def __init__(self, outdir: str | os.PathLike):
        self.root = pathlib.Path(outdir)
        self.manifest = self.root / MANIFEST

    def path(self, name: str) -> pathlib.Path:
        """Path of a part of the run (``raw.zarr``, ``results.hdf5``, ...)."""
        return self.root / name

    def records(self) -> dict[str, Any]:
        """The stages recorded as done."""
        if not self.manifest.exists():
            return {}
        return json.loads(self.manifest.read_text()).get("stages", {})

    def done(self, stage: str, key: str) -> bool:
        """True when ``stage`` was completed with exactly ``key``."""
        return self.records().get(stage, {}).get("key") == key

    def record(self, stage: str, key: str, **info: Any) -> None:
        """Mark ``stage`` done with ``key`` (atomic rewrite of run.json)."""
        stages = self.records()
        stages[stage] = {"key": key, "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        write_json(self.manifest, {"format": 1, "stages": stages})

    def forget(self, stage: str) -> None:
        """Drop a stage's record (its outputs are being redone)."""
        stages = self.records()
        if stages.pop(stage, None) is not None:
            write_json(self.manifest, {"format": 1, "stages": stages})

    def lock(self) -> None:
        """Take the folder for this process, or fail if a live run holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / LOCK
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._check_stale(lock)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(owner, fh)
            return
        raise StoreExistsError(f"cannot lock {self.root}: remove {lock} if no run is using it")

    def unlock(self) -> None:
        """Release the folder."""
        (self.root / LOCK).unlink(missing_ok=True)

    def _check_stale(self, lock: pathlib.Path) -> None:
        try:
            owner = json.loads(lock.read_text())
        except (OSError, ValueError):
            owner = {}
        alive = owner.get("host") != socket.gethostname() or _pid_alive(owner.get("pid"))
        if alive:
            raise StoreExistsError(
                f"{self.root} is being written by another run (pid {owner.get('pid')} on "
                f"{owner.get('host')}): choose another output folder or wait for it to end")
        lock.unlink(missing_ok=True)  # its run died: take over


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
