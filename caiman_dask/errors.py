"""Exceptions raised by caiman-dask.

Every class also derives from the matching built-in exception, so callers that
already catch ``ValueError`` or ``FileNotFoundError`` keep working. Messages name
the file, parameter or task at fault and say what to change.
"""

from __future__ import annotations

import difflib
import errno
import os


class CaimanDaskError(Exception):
    """Base class of every error raised on purpose by caiman-dask."""


class ConfigError(CaimanDaskError, ValueError):
    """A configuration value or parameter file is invalid."""


class ParameterError(CaimanDaskError, ValueError):
    """A parameter value is invalid or inconsistent with the data."""


class BackendError(CaimanDaskError, ValueError):
    """An unknown cluster backend was requested."""


class ClusterError(CaimanDaskError, RuntimeError):
    """A cluster could not be started, reached or used."""


class TaskError(CaimanDaskError, RuntimeError):
    """A task failed on a worker; the message carries the remote traceback."""


class WorkerLostError(TaskError):
    """Workers died repeatedly while running a task (often its memory limit)."""


class MovieError(CaimanDaskError, ValueError):
    """A movie file cannot be read as a movie (corrupt, empty, wrong shape or dtype)."""


class MovieNotFoundError(CaimanDaskError, FileNotFoundError):
    """A movie file or dataset does not exist."""


class StoreExistsError(CaimanDaskError, FileExistsError):
    """The destination store exists and overwriting was not requested."""


class IncompleteStoreError(CaimanDaskError, RuntimeError):
    """A store exists but was never completed (an interrupted write)."""


class DiskFullError(CaimanDaskError, OSError):
    """The disk or quota filled up while a run wrote a file; nothing partial was kept."""


class ChunkAlignmentError(CaimanDaskError, ValueError):
    """Parallel writes would straddle storage chunks."""


class ResultsError(CaimanDaskError, ValueError):
    """A results or regions file cannot be written or read as one."""


class ResultsNotFoundError(CaimanDaskError, FileNotFoundError):
    """A results or regions file does not exist."""


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` is a full disk or an exceeded quota (also HDF5's errors)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: str, exc: OSError) -> DiskFullError:
    """The clear error for a file of a run that could not be written for lack of space."""
    reason = os.strerror(exc.errno) if exc.errno else "No space left on device"
    error = DiskFullError(
        f"{path}: the disk is full ({reason}). Nothing partial was kept and earlier "
        "results are untouched. Free space (or choose another output folder), then run "
        "the same command again: finished stages and CNMF patches are reused")
    error.errno = exc.errno
    return error


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """``" Did you mean 'K'?"`` for the known name closest to ``name`` (case-insensitive),
    or ``""`` when none is close."""
    lowered = {k.lower(): k for k in known}
    exact = lowered.get(str(name).lower())
    close = [exact] if exact else [lowered[m] for m in difflib.get_close_matches(
        str(name).lower(), list(lowered), n=1)]
    return f" Did you mean {close[0]!r}?" if close else ""
