"""The run folder's memory: which stages are done for which inputs and parameters.

``OUTDIR/run.json`` maps each stage to the key it was completed with. A stage's key
hashes its inputs' identity, the parameters that affect it and the key of the stage
before it, so a rerun redoes exactly the stages whose inputs or parameters changed
(and everything after them) and nothing else. ``OUTDIR/.lock`` keeps two runs from
writing the same folder.

``OUTDIR`` is a local folder or any fsspec URL (``s3://bucket/run``, ``gs://...``).
Every part of the run lives under it; a folder at a URL keeps only the client's own
files in a local scratch directory (the log, which is uploaded, and HDF5 files, which
are written there and uploaded whole). Small files are written atomically: a
temporary name and a rename on a local disk, one PUT (the object appears whole or not
at all) on object storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import posixpath
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from caiman_dask.errors import ConfigError, StoreExistsError, disk_full, is_disk_full
from caiman_dask.movie.paths import filesystem, is_url
from caiman_dask.pipeline.redact import redact, secrets_of

LOCK = ".lock"
MANIFEST = "run.json"


def stage_key(**parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What identifies an input file: its path, size and modification time (or ETag)."""
    if is_url(path):
        try:
            fs, inner = filesystem(path, storage_options)
            info = fs.info(inner)
        except (OSError, ValueError):
            return {"path": path}
        found = {k: info.get(k) for k in ("size", "ETag", "mtime", "LastModified")}
        return {"path": path, **{k: v for k, v in found.items() if v is not None}}
    try:
        stat = os.stat(path)
    except OSError:
        return {"path": path}
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class RunFolder:
    """The output folder of one run (local or a URL): stage records, lock, its parts.

    Parameters
    ----------
    outdir : str or path
        Local folder or fsspec URL.
    storage_options : dict, optional
        fsspec options for a URL (credentials, ``endpoint_url``...); never saved.
    """

    def __init__(self, outdir: str | os.PathLike, *,
                 storage_options: dict[str, Any] | None = None):
        text = os.fspath(outdir)
        self.remote = is_url(text)
        self.url = text.rstrip("/") if self.remote else os.path.abspath(text)
        #: A ``pathlib.Path`` for a local folder, the URL for a remote one.
        self.root: pathlib.Path | str = self.url if self.remote else pathlib.Path(self.url)
        self.fs, self._base = filesystem(self.url, storage_options)
        self._secrets = secrets_of(storage_options)
        self._scratch: str | None = None

    def path(self, name: str) -> str:
        """Path or URL of a part of the run (``raw.zarr``, ``results.hdf5``, ...)."""
        return posixpath.join(self.url, name) if self.remote else os.path.join(self.url, name)

    def _key(self, name: str = "") -> str:
        return posixpath.join(self._base, name) if name else self._base

    @contextlib.contextmanager
    def _access(self, what: str, name: str = "") -> Iterator[None]:
        """Turn storage failures other than missing/existing files into a clear error."""
        try:
            yield
        except (FileNotFoundError, FileExistsError, IsADirectoryError):
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.path(name) if name else self.url, exc) from None
            message = redact(str(exc), self._secrets)
            hint = ("the credentials (storage options or environment), the bucket and the "
                    "endpoint") if self.remote else "the folder's permissions"
            raise ConfigError(f"cannot {what} {self.path(name) if name else self.url}: "
                              f"{message}. Check {hint}") from None

    # ------------------------------------------------------------------ files
    def exists(self, name: str = "") -> bool:
        """True when the folder (or a part of it) exists."""
        with self._access("read", name):
            return bool(self.fs.exists(self._key(name)))

    def is_dir(self, name: str = "") -> bool:
        """True when the folder (or a part of it) is a folder / a prefix with objects."""
        with self._access("read", name):
            return bool(self.fs.isdir(self._key(name)))

    def listdir(self, name: str = "") -> list[str]:
        """Names of the entries of the folder (or of one of its folders); [] if missing."""
        key = self._key(name)
        with self._access("list", name):
            self.fs.invalidate_cache(key)
            try:
                entries = self.fs.ls(key, detail=False)
            except FileNotFoundError:
                return []
        return sorted(posixpath.basename(str(e).rstrip("/")) for e in entries
                      if str(e).rstrip("/") != key.rstrip("/"))

    def read_bytes(self, name: str) -> bytes | None:
        """A part's bytes, None when it does not exist."""
        with self._access("read", name):
            try:
                return bytes(self.fs.cat_file(self._key(name)))
            except FileNotFoundError:
                return None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a part atomically (temporary file + rename locally, one PUT remotely)."""
        key = self._key(name)
        with self._access("write", name):
            if self.remote:
                self.fs.pipe_file(key, data)
                return
            folder, base = os.path.split(key)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{base}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, key)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def write_json(self, name: str, data: Any) -> None:
        """Write JSON atomically."""
        self.write_bytes(name, json.dumps(data, indent=2, default=str).encode())

    def remove(self, name: str) -> None:
        """Remove a part (a file or a whole folder) if it exists."""
        with self._access("remove", name), contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._key(name), recursive=True)

    # ------------------------------------------------------------------ client-local files
    def local(self, name: str) -> str:
        """A local path for a part the client writes or reads with local-file libraries.

        The part itself for a local folder; a file in the scratch directory for a URL
        (:meth:`upload` publishes it, :meth:`download` fetches it).
        """
        if not self.remote:
            return self.path(name)
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="caiman-dask-run-")
        path = os.path.join(self._scratch, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def upload(self, name: str) -> None:
        """Publish the scratch copy of ``name`` (whole, one object); no-op when local."""
        if self.remote:
            with self._access("write", name):
                self.fs.put_file(self.local(name), self._key(name))

    def download(self, name: str) -> str | None:
        """Local path of ``name`` (fetched into scratch for a URL); None if missing."""
        if not self.exists(name):
            return None
        if self.remote:
            with self._access("read", name):
                self.fs.get_file(self._key(name), self.local(name))
        return self.local(name)

    def close(self) -> None:
        """Remove the scratch directory."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    # ------------------------------------------------------------------ stage records
    def records(self) -> dict[str, Any]:
        """The stages recorded as done."""
        data = self.read_bytes(MANIFEST)
        return {} if data is None else json.loads(data).get("stages", {})

    def done(self, stage: str, key: str) -> bool:
        """True when ``stage`` was completed with exactly ``key``."""
        return self.records().get(stage, {}).get("key") == key

    def record(self, stage: str, key: str, **info: Any) -> None:
        """Mark ``stage`` done with ``key`` (atomic rewrite of run.json)."""
        stages = self.records()
        stages[stage] = {"key": key, "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        self.write_json(MANIFEST, {"format": 1, "stages": stages})

    def forget(self, stage: str) -> None:
        """Drop a stage's record (its outputs are being redone)."""
        stages = self.records()
        if stages.pop(stage, None) is not None:
            self.write_json(MANIFEST, {"format": 1, "stages": stages})

    # ------------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take the folder for this process, or fail if a live run holds it.

        The lock is created only if absent: ``O_EXCL`` locally, a conditional PUT
        (``If-None-Match: *``) on S3. On a store that ignores the condition, or a
        filesystem without exclusive create (checked, then written), two runs started
        at the same instant could both take it.
        """
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with self._access("write", LOCK):
            if not self.remote:
                os.makedirs(self.url, exist_ok=True)
            for _ in range(2):
                try:
                    self._create(self._key(LOCK), json.dumps(owner).encode())
                except FileExistsError:
                    self._check_stale()
                    continue
                except FileNotFoundError as exc:
                    raise ConfigError(f"cannot create {self.path(LOCK)}: {exc}; check that "
                                      "the bucket (or parent folder) exists") from None
                return
        raise StoreExistsError(f"cannot lock {self.url}: remove {self.path(LOCK)} if no run "
                               "is using it")

    def _create(self, key: str, data: bytes) -> None:
        """Write ``key`` only if absent (FileExistsError otherwise)."""
        try:
            with self.fs.open(key, "xb") as fh:
                fh.write(data)
        except (NotImplementedError, ValueError):  # no exclusive create here: check, write
            if self.fs.exists(key):
                raise FileExistsError(key) from None
            self.fs.pipe_file(key, data)

    def unlock(self) -> None:
        """Release the folder."""
        self.remove(LOCK)

    def _check_stale(self) -> None:
        try:
            owner = json.loads(self.read_bytes(LOCK) or b"{}")
        except ValueError:
            owner = {}
        alive = owner.get("host") != socket.gethostname() or _pid_alive(owner.get("pid"))
        if alive:
            raise StoreExistsError(
                f"{self.url} is being written by another run (pid {owner.get('pid')} on "
                f"{owner.get('host')}, started {owner.get('started', '?')}): choose another "
                f"output folder or wait for it to end (if that run is dead, remove "
                f"{self.path(LOCK)})")
        self.remove(LOCK)  # its run died: take over


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
    """Write JSON to a local file atomically (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
