"""Local paths and fsspec URLs: expand lists and globs, detect formats, checksum sources."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from caiman_dask.errors import MovieError, MovieNotFoundError
from caiman_dask.movie.model import SourceFile

PathLike = str | os.PathLike
GLOB_CHARS = "*?["
READ_BYTES = 8 << 20  # bytes per read when checksumming
SUFFIXES: dict[str, str] = {
    ".tif": "tiff", ".tiff": "tiff", ".btf": "tiff", ".tf2": "tiff", ".tf8": "tiff",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".he5": "hdf5", ".nwb": "hdf5",
    ".npy": "npy", ".mmap": "caiman-mmap", ".zarr": "zarr",
}
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"\x93NUMPY", "npy"),
)
ZARR_KEYS = ("zarr.json", ".zgroup", ".zarray")


def is_url(path: PathLike) -> bool:
    """True for ``protocol://...`` strings other than ``file://``."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def filesystem(path: PathLike, storage_options: dict[str, Any] | None = None
               ) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec filesystem of ``path`` and the path inside it.

    ``storage_options`` apply to URLs only; a local path ignores them, so one dict can
    serve a local source and a remote destination.
    """
    text = os.fspath(path)
    return url_to_fs(text, **(storage_options or {})) if is_url(text) else url_to_fs(text)


def normalize(path: PathLike) -> str:
    """A URL unchanged, a local path made absolute."""
    text = os.fspath(path)
    return text if is_url(text) else os.path.abspath(os.path.expanduser(text))


def expand_sources(source: PathLike | Sequence[PathLike],
                   storage_options: dict[str, Any] | None = None) -> list[str]:
    """Turn a path, URL, glob or list of them into the ordered list of inputs.

    Globs are expanded and sorted by name; a list keeps its order.

    Raises
    ------
    MovieNotFoundError
        An empty list, or a glob that matches nothing.
    """
    items: Iterable[PathLike] = [source] if isinstance(source, (str, os.PathLike)) else source
    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        out.extend(_glob(text, storage_options) if any(c in text for c in GLOB_CHARS)
                   else [normalize(text)])
    if not out:
        raise MovieNotFoundError("no input files were given: pass a path, a URL, a glob or a list")
    return out


def _glob(pattern: str, storage_options: dict[str, Any] | None) -> list[str]:
    fs, path = filesystem(pattern, storage_options)
    found = sorted(fs.glob(path))
    if not found:
        raise MovieNotFoundError(f"{pattern}: no file matches this pattern")
    if not is_url(pattern):
        return [normalize(p) for p in found]
    return [fs.unstrip_protocol(p) for p in found]


def detect_format(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """Return ``tiff``, ``hdf5``, ``npy``, ``caiman-mmap`` or ``zarr`` for an input.

    Raises
    ------
    MovieNotFoundError
        ``path`` does not exist.
    MovieError
        An empty file, a directory that is not a zarr store, or an unknown format.
    """
    fs, inner = filesystem(path, storage_options)
    if any(fs.exists(posixpath.join(inner, key)) for key in ZARR_KEYS):
        return "zarr"  # also for stores over HTTP, where a directory has no listing
    if not fs.exists(inner):
        raise MovieNotFoundError(f"{path}: no such file or store")
    if fs.isdir(inner):
        raise MovieError(f"{path} is a directory but not a zarr store (no zarr.json, .zgroup "
                         "or .zarray in it): pass the movie files inside it, or a glob")
    if fs.size(inner) == 0:
        raise MovieError(f"{path} is an empty file (0 bytes): the copy or acquisition that "
                         "wrote it did not finish")
    suffix = posixpath.splitext(inner.lower())[1]
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    with fs.open(inner, "rb") as fh:
        head = fh.read(8)
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    raise MovieError(f"{path}: unknown movie format (suffix {suffix or 'none'!r}); supported: "
                     "TIFF, HDF5/NWB, NPY, CaImAn .mmap and zarr stores")


def source_size(path: str, storage_options: dict[str, Any] | None = None) -> int:
    """Bytes of a file, or the total bytes of the files under a directory store."""
    fs, inner = filesystem(path, storage_options)
    return int(fs.du(inner)) if fs.isdir(inner) else int(fs.size(inner))


def checksum_source(source: SourceFile, storage_options: dict[str, Any] | None = None
                    ) -> SourceFile:
    """Return ``source`` with its SHA-256 checksum filled in.

    A file gives ``"sha256:<hex>"`` of its bytes (``sha256sum`` prints the same hex); a
    directory store gives ``"sha256-tree:<hex>"``, the SHA-256 of the sorted lines
    ``"<sha256 of file>  <relative path>"`` of its files. Reads 8 MB at a time.
    """
    fs, inner = filesystem(source.path, storage_options)
    if not fs.isdir(inner):
        return dataclasses.replace(source, checksum="sha256:" + _file_sha256(fs, inner))
    lines = []
    for name in sorted(fs.find(inner)):
        rel = posixpath.relpath(name, inner.rstrip("/"))
        lines.append(f"{_file_sha256(fs, name)}  {rel}\n")
    tree = hashlib.sha256("".join(lines).encode()).hexdigest()
    return dataclasses.replace(source, checksum="sha256-tree:" + tree)


def _file_sha256(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb", block_size=READ_BYTES) as fh:
        while chunk := fh.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
