"""``to_zarr``: convert any movie into a caiman-dask zarr v3 store, streamed.

The store is a zarr v3 group: the array ``movie`` (the source's dtype, chunks and shards
from the chunk plan, Blosc LZ4 bit-shuffle compression) and group attributes under
``caiman_dask`` (see :func:`store_attributes`). Writing order: attributes with
``complete: false``, then the pixels block by block, then the attributes again with
the sources' SHA-256 checksums and ``complete: true`` - last. A store without it is
never taken for complete. ``overwrite=True`` replaces only a caiman-dask store.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import zarr
from zarr.codecs import BloscCodec

from caiman_dask.errors import (
    IncompleteStoreError,
    ParameterError,
    StoreExistsError,
    TaskError,
    is_disk_full,
)
from caiman_dask.movie.model import Movie, SourceFile, check_dtype
from caiman_dask.movie.paths import expand_sources, filesystem, normalize
from caiman_dask.movie.readers import open_movie
from caiman_dask.movie.writer import (
    BlockWritten,
    block_regions,
    block_shape,
    checksum_tasks,
    run_tasks,
    write_tasks,
)
from caiman_dask.movie.zarrio import (
    ARRAY_NAME,
    ATTRS_KEY,
    FORMAT_VERSION,
    open_store,
    store_attrs,
    zarr_store,
)
from caiman_dask.plan import ChunkPlan, StoreLayout, layout_from_chunks, plan_chunks
from caiman_dask.progress import Progress

__all__ = ["open_store", "to_zarr"]

CHECKSUM = "sha256"


def compressor() -> BloscCodec:
    """The store's codec: Blosc LZ4 level 5 with bit shuffle.

    On the neurofinder movie (uint16) it compresses 1.56x (zstd-1: 1.59x) and writes
    ~1.5-3x and reads ~2-4x faster than zstd-1 (measured on the 2-core test machine).
    """
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


@dataclass(frozen=True)
class PlanOptions:
    """CaImAn geometry for ``chunks="auto"`` (see :func:`caiman_dask.plan.plan_chunks`)."""

    rf: int | Sequence[int] = 25
    stride: int | Sequence[int] | None = None
    border_pix: int = 0
    num_frames_split: int = 80
    strides: int | Sequence[int] = (96, 96)
    overlaps: int | Sequence[int] = (32, 32)


def to_zarr(source: Any, dest: str | os.PathLike, *,
            chunks: str | Sequence[int | None] | ChunkPlan = "auto", client: Any = None,
            overwrite: bool = False, storage_options: dict[str, Any] | None = None,
            rf: int | Sequence[int] = 25, stride: int | Sequence[int] | None = None,
            border_pix: int = 0, num_frames_split: int = 80,
            strides: int | Sequence[int] = (96, 96), overlaps: int | Sequence[int] = (32, 32),
            fr: float | None = None, dxy: float | Sequence[float] | None = None,
            progress: bool | None = None, dataset: str | None = None,
            axes: str | None = None) -> Movie:
    """Convert a movie into a caiman-dask zarr v3 store, one block per task.

    Parameters
    ----------
    source : path, URL, glob, list, or Movie
        Anything :func:`open_movie` accepts (with ``dataset`` and ``axes``), or a Movie.
    dest : path or URL
        The store to write (``.zarr`` by convention).
    chunks : "auto", tuple or ChunkPlan, optional
        "auto" plans chunks and shards from the CaImAn geometry below
        (:func:`caiman_dask.plan.plan_chunks`); a tuple gives zarr chunks (no shards);
        a ChunkPlan uses its ``raw`` layout.
    client : distributed.Client, optional
        Run the block tasks on this cluster; default: threads in this process.
    overwrite : bool, optional
        Replace ``dest`` if it is a caiman-dask store (never anything else).
    storage_options : dict, optional
        fsspec options for every URL (source and destination).
    rf, stride, border_pix, num_frames_split, strides, overlaps : optional
        CaImAn's patch and motion geometry, used by ``chunks="auto"``.
    fr : float, optional
        Frame rate in Hz; default from the source's metadata.
    dxy : float or (float, float), optional
        Pixel size (dy, dx) in micrometres; default from the source's metadata.
    progress : bool, optional
        Show progress on stderr; default only when stderr is a terminal.
    dataset, axes : str, optional
        Passed to :func:`open_movie`.

    Returns
    -------
    Movie
        The written store, opened with :func:`open_store`.

    Raises
    ------
    StoreExistsError
        ``dest`` exists (without ``overwrite``), or is not a caiman-dask store.
    MovieError, MovieNotFoundError, ParameterError, ChunkAlignmentError
        Bad input or options; nothing has been written then.
    """
    dest = normalize(dest)
    options = PlanOptions(rf, stride, border_pix, num_frames_split, strides, overlaps)
    movie = _open_source(source, storage_options, dataset, axes, None)
    layout, plan = resolve_layout(chunks, movie, options)
    block = block_shape(layout)
    block_regions(layout, block)
    if not isinstance(source, Movie):
        movie = _open_source(source, storage_options, dataset, axes, block)
    attrs = store_attributes(movie, layout, plan, fr=fr, dxy=dxy)
    inputs = [] if isinstance(source, Movie) else expand_sources(source, storage_options)
    _check_not_inside([*inputs, *(s.path for s in movie.metadata.sources)], dest)
    prepare_destination(dest, storage_options, overwrite=overwrite)  # nothing written before
    group, target = create_store(dest, storage_options, layout, attrs)
    shown = sys.stderr.isatty() if progress is None else bool(progress)
    try:
        results = _stream(movie, target, block, storage_options, client=client, shown=shown)
        finish_store(group, attrs, results, expected=movie.data.nbytes)
    except BaseException as exc:
        check_disk_full(exc, dest, "convert again with overwrite=True")
        exc.add_note(f"caiman-dask: {dest} is left incomplete (marked so); fix the cause and "
                     "convert again with overwrite=True")
        raise
    return open_store(dest, storage_options=storage_options)


def check_disk_full(exc: BaseException, dest: str, redo: str) -> None:
    """Raise a clear :class:`IncompleteStoreError` when ``exc`` is a full disk or quota."""
    if is_disk_full(exc):
        raise IncompleteStoreError(
            f"{dest}: the disk is full ({exc.strerror}); the store is left incomplete "
            f"(marked so). Free space or write somewhere else, then {redo} "
            "(a pipeline run resumes by itself)") from exc


def _stream(movie: Movie, target: zarr.Array, block: tuple[int, ...],
            storage_options: dict[str, Any] | None, *, client: Any, shown: bool) -> list[Any]:
    """Run the block writes and source checksums with progress; return their results."""
    tasks = write_tasks(movie.data, target, block)
    tasks += checksum_tasks(movie.metadata.sources, storage_options)
    with Progress("convert", total=len(tasks), enabled=shown) as bar:
        return run_tasks(tasks, client=client, progress=bar)


def _open_source(source: Any, storage_options: dict[str, Any] | None, dataset: str | None,
                 axes: str | None, chunks: Sequence[int] | None) -> Movie:
    if isinstance(source, Movie):
        movie = source
    else:
        movie = open_movie(source, dataset=dataset, storage_options=storage_options,
                           chunks=chunks, axes=axes)
    check_dtype(movie.data.dtype, str(movie.metadata.sources[0].path
                                      if movie.metadata.sources else "the movie"))
    return movie


def resolve_layout(chunks: Any, movie: Movie, options: PlanOptions
                   ) -> tuple[StoreLayout, dict[str, Any] | None]:
    """The raw store layout and the plan dict (None for explicit chunks)."""
    shape, dtype = movie.shape, movie.dtype
    if isinstance(chunks, ChunkPlan):
        if tuple(chunks.raw.shape) != shape:
            raise ParameterError(f"the chunk plan is for shape {chunks.raw.shape} but the "
                                 f"movie is {shape}: plan it for this movie")
        return chunks.raw, chunks.to_dict()
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ParameterError(f"chunks={chunks!r}: use 'auto', a tuple like (80, 512, 512) "
                                 "or a ChunkPlan")
        if len(shape) != 3:
            raise ParameterError(f"chunks='auto' plans (T, Y, X) movies; this one is {shape}: "
                                 "give explicit chunks, e.g. chunks=(80, 1, 512, 512)")
        plan = plan_chunks(shape, dtype, rf=options.rf, stride=options.stride,
                           border_pix=options.border_pix,
                           num_frames_split=options.num_frames_split,
                           strides=options.strides, overlaps=options.overlaps)
        return plan.raw, plan.to_dict()
    return layout_from_chunks(shape, dtype, tuple(chunks)), None


def store_attributes(movie: Movie, layout: StoreLayout, plan: dict[str, Any] | None, *,
                     fr: float | None, dxy: float | Sequence[float] | None) -> dict[str, Any]:
    """The ``caiman_dask`` attributes of a new store (``complete`` still False)."""
    meta = movie.metadata
    return {
        "format_version": FORMAT_VERSION, "array": ARRAY_NAME, "dims": list(meta.dims),
        "shape": list(movie.shape), "dtype": str(movie.dtype),
        "fr": _frame_rate(fr if fr is not None else meta.fr),
        "dxy": _pixel_size(dxy if dxy is not None else meta.dxy),
        "sources": [s.as_dict() for s in meta.sources], "checksum_algorithm": CHECKSUM,
        "plan": plan, "layout": layout.to_dict(), "writer": _writer(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": False,
    }


def _frame_rate(fr: Any) -> float | None:
    if fr is None:
        return None
    if not isinstance(fr, (int, float)) or isinstance(fr, bool) or not fr > 0:
        raise ParameterError(f"fr={fr!r} must be a frame rate in Hz > 0")
    return float(fr)


def _pixel_size(dxy: Any) -> list[float] | None:
    if dxy is None:
        return None
    pair = [dxy, dxy] if isinstance(dxy, (int, float)) else list(dxy)
    if len(pair) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in pair):
        raise ParameterError(f"dxy={dxy!r} must be a pixel size in micrometres > 0, or a "
                             "(dy, dx) pair")
    return [float(v) for v in pair]


def _writer() -> str:
    try:
        return f"caiman-dask {metadata.version('caiman-dask')}"
    except metadata.PackageNotFoundError:
        return "caiman-dask"


def _check_not_inside(inputs: Sequence[str], dest: str) -> None:
    root = dest.rstrip("/")
    for path in inputs:
        if path.rstrip("/") == root or path.startswith(root + "/"):
            raise ParameterError(f"{dest} is (or holds) the input {path}: write the store "
                                 "somewhere else")


def prepare_destination(dest: str, storage_options: dict[str, Any] | None, *,
                        overwrite: bool) -> None:
    """Make room for a new store at ``dest``, deleting only a caiman-dask store.

    Raises
    ------
    StoreExistsError
        ``dest`` exists and ``overwrite`` is False, or it is not a caiman-dask store.
    """
    fs, inner = filesystem(dest, storage_options)
    if not fs.exists(inner):
        return
    if not overwrite:
        raise StoreExistsError(f"{dest} already exists: choose another destination, or pass "
                               "overwrite=True (--overwrite) to replace a caiman-dask store")
    if store_attrs(dest, storage_options) is not None:
        fs.rm(inner, recursive=True)
        return
    if fs.isdir(inner) and not fs.ls(inner):
        return
    raise StoreExistsError(f"{dest} exists and is not a caiman-dask store: refusing to delete "
                           "it, even with overwrite=True. Remove it yourself or choose another "
                           "destination")


def create_store(dest: str, storage_options: dict[str, Any] | None, layout: StoreLayout,
                 attrs: dict[str, Any], *, compressors: Sequence[Any] | None = None
                 ) -> tuple[zarr.Group, zarr.Array]:
    """Create the group (attributes first, not complete) and the empty movie array.

    ``compressors`` default: :func:`compressor` (``[]``: uncompressed).
    """
    codecs = compressor() if compressors is None else list(compressors)
    store = zarr_store(dest, storage_options, read_only=False)
    group = zarr.create_group(store, zarr_format=3, attributes={ATTRS_KEY: attrs})
    array = group.create_array(ARRAY_NAME, shape=layout.shape, dtype=layout.dtype,
                               chunks=layout.chunks, shards=layout.shards,
                               compressors=codecs, fill_value=0,
                               dimension_names=attrs["dims"],
                               config={"write_empty_chunks": True})  # skips a costly check
    return group, array


def finish_store(group: zarr.Group, attrs: dict[str, Any], results: list[Any], *,
                 expected: int) -> None:
    """Check every byte was written, then record checksums and ``complete: true`` last.

    ``results`` holds the tasks' :class:`BlockWritten` (their bytes must sum to
    ``expected``) and any :class:`SourceFile` with checksums, which replace the sources.
    """
    written = sum(r.nbytes for r in results if isinstance(r, BlockWritten))
    if written != expected:
        raise TaskError(f"the write tasks wrote {written} bytes of {expected}; the store stays "
                        "incomplete: convert again with overwrite=True")
    checked = [r.as_dict() for r in results if isinstance(r, SourceFile)]
    done = {**attrs, "complete": True, "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if checked:  # stores derived from a store (no checksum tasks) keep the sources as given
        done["sources"] = checked
    group.attrs.update({ATTRS_KEY: done})
