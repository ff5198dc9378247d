"""Zarr access: stores for paths and URLs, our movie stores, and other zarr inputs.

A caiman-dask store is a zarr v3 group holding the array ``movie`` and, in the group's
attributes under ``caiman_dask``, the movie's metadata. Its ``complete`` flag is written
last: a store without it was interrupted and is never taken for complete.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import dask.array as da
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import FsspecStore, LocalStore

from caiman_dask import config
from caiman_dask.errors import ConfigError, IncompleteStoreError, MovieError, MovieNotFoundError
from caiman_dask.movie.lazy import (
    Part,
    axes_permutation,
    check_chunks,
    frame_chunks,
    stored_chunks,
)
from caiman_dask.movie.model import Movie, MovieMetadata, SourceFile, check_dtype, dims_for
from caiman_dask.movie.paths import filesystem, is_url, source_size

ATTRS_KEY = "caiman_dask"
ARRAY_NAME = "movie"
FORMAT_VERSION = 1
STORE_FORMAT = "caiman-dask-store"
CORRECTED_CODECS = ("none", "lz4", "lz4-shuffle", "zstd", "lz4-bitshuffle")


def corrected_codecs(name: str | None = None) -> list[BloscCodec | ZstdCodec]:
    """Compressors of the float32 stores motion correction writes (``store.corrected-codec``).

    Parameters
    ----------
    name : str, optional
        One of :data:`CORRECTED_CODECS`; default the ``caiman-dask.store.corrected-codec``
        setting ("none": corrected float32 movies compress ~1.2x at best, for 2-5x the
        write time; docs/motion.md has the measurements).

    Returns
    -------
    list
        The ``compressors`` argument of ``zarr.create_array`` (empty: uncompressed).
    """
    name = config.get("store.corrected-codec", name)
    codecs: dict[str, list[BloscCodec | ZstdCodec]] = {
        "none": [], "lz4": [BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle")],
        "lz4-shuffle": [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")],
        "zstd": [ZstdCodec(level=1)],
        "lz4-bitshuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]}
    if name not in codecs:
        raise ConfigError(f"caiman-dask.store.corrected-codec={name!r}: choose one of "
                          f"{', '.join(CORRECTED_CODECS)}")
    return codecs[name]


def zarr_store(path: str, storage_options: dict[str, Any] | None = None, *,
               read_only: bool = True) -> FsspecStore | LocalStore:
    """A zarr store for a local path or an fsspec URL."""
    if is_url(path):
        return FsspecStore.from_url(path, storage_options=storage_options, read_only=read_only)
    return LocalStore(path, read_only=read_only)


def store_attrs(path: str, storage_options: dict[str, Any] | None = None
                ) -> dict[str, Any] | None:
    """Our attributes if ``path`` is a zarr v3 group written by caiman-dask, else None.

    Reads ``zarr.json`` directly, so it also recognises a store whose data is damaged.
    """
    fs, inner = filesystem(path, storage_options)
    try:
        meta = json.loads(fs.cat_file(posixpath.join(inner, "zarr.json")))
    except (OSError, ValueError):
        return None
    except Exception as exc:  # e.g. botocore's NoCredentialsError: not an OSError
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}: {exc}. Check the "
                          "credentials (storage_options or environment) and the endpoint"
                          ) from None
    attrs = meta.get("attributes", {}) if isinstance(meta, dict) else {}
    ours = attrs.get(ATTRS_KEY) if meta.get("node_type") == "group" else None
    return ours if isinstance(ours, dict) else None


def open_store(path: str, *, storage_options: dict[str, Any] | None = None,
               chunks: Any = None) -> Movie:
    """Open a caiman-dask zarr store (the fast path of ``open_movie``).

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the store.
    storage_options : dict, optional
        fsspec options for a URL (credentials, ``endpoint_url``, ...).
    chunks : tuple, optional
        Dask chunks; default the store's shards (its chunks when unsharded).

    Returns
    -------
    Movie
        The stored movie and the metadata recorded at conversion.

    Raises
    ------
    MovieNotFoundError
        Nothing at ``path``.
    MovieError
        ``path`` is not a caiman-dask store.
    IncompleteStoreError
        The store was never completed (an interrupted conversion).
    """
    attrs = store_attrs(path, storage_options)
    if attrs is None:
        fs, inner = filesystem(path, storage_options)
        if not fs.exists(inner):
            raise MovieNotFoundError(f"{path}: no such store")
        raise MovieError(f"{path} is not a caiman-dask store (no '{ATTRS_KEY}' attributes); "
                         "open it with open_movie, or convert it with to_zarr")
    if attrs.get("complete") is not True:
        raise IncompleteStoreError(
            f"{path} is an incomplete caiman-dask store: the conversion writing it was "
            "interrupted (or is still running). Convert again with overwrite=True "
            f"(command line: caiman-dask convert INPUT... -o {path} --overwrite)")
    group = zarr.open_group(zarr_store(path, storage_options), mode="r")
    array = group[attrs.get("array", ARRAY_NAME)]
    chunks = check_chunks(chunks, array.ndim) or array.shards or array.chunks
    data = da.from_zarr(array, chunks=chunks)
    return Movie(data=data, metadata=metadata_from_attrs(attrs))


def metadata_from_attrs(attrs: dict[str, Any]) -> MovieMetadata:
    """Our store attributes as :class:`MovieMetadata`."""
    dxy = attrs.get("dxy")
    return MovieMetadata(
        fr=None if attrs.get("fr") is None else float(attrs["fr"]),
        dxy=None if dxy is None else (float(dxy[0]), float(dxy[1])),
        dims=tuple(attrs["dims"]), dtype=str(attrs["dtype"]),
        sources=tuple(SourceFile.from_dict(s) for s in attrs.get("sources", ())),
        plan=attrs.get("plan"), shape=tuple(int(n) for n in attrs["shape"]),
        format=STORE_FORMAT,
    )


def open_zarr_movie(path: str, *, dataset: str | None = None, axes: str | None = None,
                    storage_options: dict[str, Any] | None = None, chunks: Any = None) -> Part:
    """Open a zarr v2/v3 array, or the movie array of a zarr group, lazily.

    ``dataset`` is the array's path inside a group (default: its only 3-D/4-D array);
    ``axes`` gives the stored axis letters when not ``TYX`` / ``TZYX``.
    """
    try:
        node = zarr.open(store=zarr_store(path, storage_options), mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise MovieError(f"{path}: not a readable zarr store: {exc}") from None
    array = _pick_array(node, dataset, path)
    where = f"{path}:{array.path}" if array.path else path
    shape, dtype = tuple(int(n) for n in array.shape), check_dtype(array.dtype, where)
    perm = axes_permutation(axes or "".join(dims_for(len(shape), where)), len(shape), where)
    unit = (array.shards or array.chunks)[perm[0]]
    chunks = stored_chunks(check_chunks(chunks, len(shape)), perm) or frame_chunks(
        shape, dtype.itemsize, time_axis=perm[0], time_unit=unit)
    data = da.from_zarr(array, chunks=tuple(chunks)).transpose(perm)
    size = source_size(path, storage_options)
    return Part(data=data, source=SourceFile(path, size, "zarr"))


def _pick_array(node: Any, dataset: str | None, path: str) -> zarr.Array:
    if isinstance(node, zarr.Array):
        return node
    candidates = sorted(name for name, member in node.members(max_depth=None)
                        if isinstance(member, zarr.Array) and member.ndim in (3, 4))
    if dataset is not None:
        member = node.get(dataset)
        if isinstance(member, zarr.Array):
            return member
        raise MovieNotFoundError(f"{path}: no array {dataset!r} in this zarr group; 3-D/4-D "
                                 f"arrays in it: {', '.join(candidates) or 'none'}")
    if len(candidates) == 1:
        return node[candidates[0]]
    if not candidates:
        raise MovieError(f"{path}: no 3-D or 4-D array in this zarr group, so no movie")
    raise MovieError(f"{path}: several arrays could be the movie: {', '.join(candidates)}; "
                     "choose one with dataset=... (--dataset on the command line)")
