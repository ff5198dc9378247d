"""``open_movie``: any supported input, opened lazily as one (T, [Z,] Y, X) movie.

Formats: TIFF (classic, BigTIFF, ImageJ, OME), HDF5/NWB, NPY, CaImAn ``.mmap``, zarr v2/v3
(our stores, bare arrays, groups). TIFF, HDF5 and zarr may be fsspec URLs
(``s3://``, ``gs://``, ``https://``, ``memory://``). Several files (a list or a glob)
are concatenated in time; they must share frame shape and pixel type.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da

from caiman_dask.errors import MovieError, ParameterError
from caiman_dask.movie.hdf5 import open_hdf5_movie
from caiman_dask.movie.lazy import Part
from caiman_dask.movie.memmap import open_mmap_movie, open_npy_movie
from caiman_dask.movie.model import Movie, MovieMetadata, SourceFile, dims_for
from caiman_dask.movie.paths import detect_format, expand_sources, source_size
from caiman_dask.movie.tiff import open_tiff_movie
from caiman_dask.movie.zarrio import STORE_FORMAT, open_store, open_zarr_movie, store_attrs

AXES_FORMATS = ("hdf5", "npy", "zarr")


@dataclass(frozen=True)
class OpenOptions:
    """The options of :func:`open_movie`, passed to each file's opener."""

    dataset: str | None = None
    axes: str | None = None
    storage_options: dict[str, Any] | None = None
    chunks: tuple[int | None, ...] | None = None


def open_movie(source: str | os.PathLike | Sequence[str | os.PathLike], *,
               dataset: str | None = None, storage_options: dict[str, Any] | None = None,
               chunks: Sequence[int | None] | None = None, axes: str | None = None) -> Movie:
    """Open a movie lazily: only headers are read here; pixels are read per dask chunk.

    Parameters
    ----------
    source : path, URL, glob, or list of them
        One movie file or store, or several files concatenated in time (a glob is
        sorted by name; a list keeps its order).
    dataset : str, optional
        HDF5/NWB dataset path or series name, or array path in a zarr group; default:
        the only 3-D/4-D one (an error lists the candidates when there are several).
    storage_options : dict, optional
        fsspec options for URLs (credentials, ``endpoint_url``, ...).
    chunks : tuple, optional
        Dask chunks in movie order, one int per axis (None or -1: whole axis); default
        whole frames, about 64 MiB, aligned to the file's own chunks.
    axes : str, optional
        HDF5, NPY and bare zarr arrays only: the letters of the stored axes when they
        are not ``TYX`` / ``TZYX``, e.g. ``"YXT"``.

    Returns
    -------
    Movie
        ``data`` (T, Y, X) or (T, Z, Y, X) dask array and its metadata.

    Raises
    ------
    MovieNotFoundError
        A missing file, dataset, or a glob matching nothing.
    MovieError
        An unreadable, empty, truncated or unsupported input, or files that do not match.
    IncompleteStoreError
        A caiman-dask store whose conversion was interrupted.
    """
    paths = expand_sources(source, storage_options)
    opts = OpenOptions(dataset, axes, storage_options, None if chunks is None else tuple(chunks))
    if len(paths) == 1 and dataset is None and axes is None:
        if store_attrs(paths[0], storage_options) is not None:
            return open_store(paths[0], storage_options=storage_options, chunks=opts.chunks)
    parts = [open_part(path, opts) for path in paths]
    return join_parts(parts)


def open_part(path: str, opts: OpenOptions) -> Part:
    """Open one file or store as a :class:`Part`."""
    kind = detect_format(path, opts.storage_options)
    if opts.axes is not None and kind not in AXES_FORMATS:
        raise ParameterError(f"{path}: axes= applies to HDF5, NPY and zarr arrays only; the "
                             f"axes of a {kind} file come from the file itself")
    so, chunks = opts.storage_options, opts.chunks
    if kind == "tiff":
        part = open_tiff_movie(path, storage_options=so, chunks=chunks)
    elif kind == "hdf5":
        part = open_hdf5_movie(path, dataset=opts.dataset, axes=opts.axes, storage_options=so,
                               chunks=chunks)
    elif kind == "npy":
        part = open_npy_movie(path, axes=opts.axes, chunks=chunks)
    elif kind == "caiman-mmap":
        part = open_mmap_movie(path, chunks=chunks)
    elif opts.dataset is None and store_attrs(path, so) is not None:
        part = _store_part(path, so, chunks)
    else:
        part = open_zarr_movie(path, dataset=opts.dataset, axes=opts.axes, storage_options=so,
                               chunks=chunks)
    return part


def _store_part(path: str, storage_options: dict[str, Any] | None, chunks: Any) -> Part:
    movie = open_store(path, storage_options=storage_options, chunks=chunks)
    meta = movie.metadata
    source = SourceFile(path, source_size(path, storage_options), STORE_FORMAT)
    return Part(data=movie.data, source=source, fr=meta.fr, dxy=meta.dxy, plan=meta.plan)


def join_parts(parts: list[Part]) -> Movie:
    """Concatenate parts in time after checking frame shape and dtype; build the metadata."""
    first = parts[0]
    for part in parts[1:]:
        a, b = first.data, part.data
        if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
            raise MovieError(
                f"{part.source.path} has frames {tuple(b.shape[1:])} {b.dtype} but "
                f"{first.source.path} has frames {tuple(a.shape[1:])} {a.dtype}: all files "
                "of one movie must share frame shape and pixel type")
    data = first.data if len(parts) == 1 else da.concatenate([p.data for p in parts], axis=0)
    formats = sorted({p.source.format for p in parts})
    meta = MovieMetadata(
        fr=next((p.fr for p in parts if p.fr is not None), None),
        dxy=next((p.dxy for p in parts if p.dxy is not None), None),
        dims=dims_for(data.ndim, first.source.path), dtype=str(data.dtype),
        sources=tuple(p.source for p in parts),
        plan=first.plan if len(parts) == 1 else None,
        shape=tuple(int(n) for n in data.shape), format="+".join(formats),
    )
    return Movie(data=data, metadata=meta)
