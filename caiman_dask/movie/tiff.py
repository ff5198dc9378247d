"""TIFF movies (classic, BigTIFF, ImageJ hyperstacks, OME-TIFF) read by page ranges.

Opening reads only the header and the IFDs (each page's data offsets and byte counts);
a block read then touches just its own pages: one ranged read per run of consecutive
uncompressed pages, or one decode per page (compressed, tiled) through tifffile with
the offsets already known, so no task ever walks the IFD chain again.

Axes come from tifffile's series: the frame is the last two axes (Y, X); leading axes
of size 1 are dropped. A single remaining leading axis is time whatever its label
(ImageJ files often label a plain stack as slices or channels). With several, ``Z`` is
depth and the others are flattened into time; channels (``C``) or samples (``S``)
next to other axes, and RGB pages, are refused.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

from caiman_dask.errors import MovieError
from caiman_dask.movie.lazy import BlockReader, Part, Region, frame_chunks, lazy_array
from caiman_dask.movie.model import SourceFile, check_dtype
from caiman_dask.movie.paths import filesystem, is_url, source_size
from caiman_dask.movie.tiffmeta import tiff_errors, tiff_scale


@dataclass(frozen=True, eq=False)
class TiffReader(BlockReader):
    """Reads blocks of frames of one TIFF file by page.

    ``offsets`` / ``bytecounts`` are ``(T, [Z,] segments)`` arrays of each frame's strips
    or tiles; ``raw`` means every page is one uncompressed run of bytes.
    """

    url: str
    storage_options: dict[str, Any] | None
    shape: tuple[int, ...]
    dtype: np.dtype
    file_dtype: str
    offsets: np.ndarray
    bytecounts: np.ndarray
    raw: bool
    keyframe_offset: int
    keyframe_index: int

    def read(self, region: Region) -> np.ndarray:
        """Read frames ``region[0]`` (and planes ``region[1]``), then crop Y and X."""
        offsets = self.offsets[region[:-2]]
        counts = self.bytecounts[region[:-2]]
        flat_o = offsets.reshape(-1, offsets.shape[-1])
        flat_c = counts.reshape(-1, counts.shape[-1])
        frames = self._read_raw(flat_o) if self.raw else self._read_decoded(flat_o, flat_c)
        frames = frames.reshape(offsets.shape[:-1] + self.shape[-2:])
        if region[-2:] == (slice(0, self.shape[-2]), slice(0, self.shape[-1])):
            return frames
        return np.ascontiguousarray(frames[(Ellipsis, *region[-2:])])

    def _read_raw(self, offsets: np.ndarray) -> np.ndarray:
        file_dtype = np.dtype(self.file_dtype)
        out = np.empty((len(offsets), *self.shape[-2:]), dtype=file_dtype)
        frame_bytes = out[0].nbytes if len(out) else 0
        fs, inner = filesystem(self.url, self.storage_options)
        with fs.open(inner, "rb", cache_type="none") as fh:
            for start, stop in _runs(offsets[:, 0], frame_bytes):
                fh.seek(int(offsets[start, 0]))
                view = memoryview(out[start:stop].reshape(-1).view(np.uint8))
                if fh.readinto(view) != len(view):
                    raise MovieError(f"{self.url}: file ended inside frame data (truncated "
                                     f"after opening?) at byte {int(offsets[start, 0])}")
        return out if file_dtype.isnative else out.astype(self.dtype)

    def _read_decoded(self, offsets: np.ndarray, counts: np.ndarray) -> np.ndarray:
        out = np.empty((len(offsets), *self.shape[-2:]), dtype=self.dtype)
        with tiff_errors(self.url), open_tiff(self.url, self.storage_options) as tf:
            tf.filehandle.seek(self.keyframe_offset)
            keyframe = tifffile.TiffPage(tf, index=self.keyframe_index)
            for i, (offs, cnts) in enumerate(zip(offsets.tolist(), counts.tolist())):
                frame = tifffile.TiffFrame(tf, index=i, keyframe=keyframe,
                                           dataoffsets=tuple(offs), databytecounts=tuple(cnts))
                try:
                    frame.asarray(out=out[i])
                except Exception as exc:  # any codec's error: name the file and the bytes
                    raise MovieError(f"{self.url}: cannot decode the page whose data starts at "
                                     f"byte {offs[0]} (damaged or truncated file?): {exc!r}"
                                     ) from exc
        return out


def _runs(starts: np.ndarray, frame_bytes: int) -> Iterator[tuple[int, int]]:
    """Yield ``(first, stop)`` index ranges of frames stored back to back."""
    if len(starts) == 0:
        return
    breaks = np.flatnonzero(np.diff(starts) != frame_bytes) + 1
    edges = [0, *breaks.tolist(), len(starts)]
    yield from zip(edges[:-1], edges[1:])


@contextlib.contextmanager
def open_tiff(url: str, storage_options: dict[str, Any] | None) -> Iterator[tifffile.TiffFile]:
    """Open a local path with tifffile directly, a URL through fsspec."""
    if not is_url(url):
        with tifffile.TiffFile(url) as tf:
            yield tf
        return
    fs, inner = filesystem(url, storage_options)
    with fs.open(inner, "rb") as fh, tifffile.TiffFile(fh) as tf:
        yield tf


def open_tiff_movie(path: str, *, storage_options: dict[str, Any] | None = None,
                    chunks: Any = None) -> Part:
    """Open a TIFF movie lazily (header and IFDs only).

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    storage_options : dict, optional
        fsspec options for a URL.
    chunks : tuple, optional
        Dask chunks in movie order; default whole frames, about 64 MiB per chunk.

    Returns
    -------
    Part
        The lazy movie and its source, frame rate and pixel size.

    Raises
    ------
    MovieError
        Damaged or truncated file, several channels, or an unsupported pixel type.
    """
    with tiff_errors(path), open_tiff(path, storage_options) as tf:
        reader = _reader(tf, path, storage_options)
        fr, dxy = tiff_scale(tf)
    size = source_size(path, storage_options)
    end = int((reader.offsets + reader.bytecounts).max())
    if end > size:
        raise MovieError(f"{path}: truncated TIFF: frame data runs to byte {end} but the file "
                         f"has {size} bytes. Copy the file again or re-export it")
    chunks = chunks or frame_chunks(reader.shape, reader.dtype.itemsize)
    data = lazy_array(reader, chunks, kind="tiff")
    return Part(data=data, source=SourceFile(path, size, "tiff"), fr=fr, dxy=dxy)


def _reader(tf: tifffile.TiffFile, path: str, storage_options: dict[str, Any] | None
            ) -> TiffReader:
    series = tf.series[0]
    if getattr(series, "is_multifile", False):
        raise MovieError(f"{path}: this OME-TIFF spreads its series over several files; pass "
                         "the files as a list (or a glob) instead")
    key = series.keyframe
    table = page_table(series.axes, series.shape, path, key.samplesperpixel)
    offsets, counts = _segments(series, table.size, path)
    file_dtype = np.dtype(tf.byteorder + np.dtype(series.dtype).char)
    dtype = check_dtype(file_dtype, path)
    frame_bytes = math.prod(series.shape[-2:]) * dtype.itemsize
    raw = _is_raw(key, offsets, counts, frame_bytes)
    shape = (*table.shape, *(int(n) for n in series.shape[-2:]))
    return TiffReader(url=path, storage_options=storage_options, shape=shape, dtype=dtype,
                      file_dtype=file_dtype.str, offsets=offsets[table], bytecounts=counts[table],
                      raw=raw, keyframe_offset=int(key.offset), keyframe_index=int(key.index))


def page_table(axes: str, shape: tuple[int, ...], path: str, samples: int = 1) -> np.ndarray:
    """Page numbers arranged ``(T,)`` or ``(T, Z)`` from a series' axes and shape."""
    if axes[-2:] != "YX" or samples != 1:
        raise MovieError(f"{path}: frames with several samples per pixel (RGB, axes {axes}) are "
                         "not supported: save a single-channel grayscale movie")
    lead = [(a, int(n)) for a, n in zip(axes[:-2], shape[:-2]) if int(n) > 1]
    pages = np.arange(math.prod(n for _, n in lead), dtype=np.int64)
    if len(lead) <= 1:
        return pages
    bad = [f"{a}={n}" for a, n in lead if a in "CS"]
    if bad:
        raise MovieError(f"{path}: {', '.join(bad)} channels (axes {axes}, shape {shape}); "
                         "caiman-dask reads single-channel movies: save one channel per file")
    letters = [a for a, _ in lead]
    if "Z" not in letters:
        return pages
    sizes = [n for _, n in lead]
    z = letters.index("Z")
    grid = np.moveaxis(pages.reshape(sizes), z, -1)
    return grid.reshape(-1, sizes[z])


def _segments(series: Any, n_pages: int, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Data offsets and byte counts of every page of ``series``: ``(n_pages, segments)``."""
    key = series.keyframe
    if series.dataoffset is not None:
        page_bytes = math.prod(key.shape) * np.dtype(series.dtype).itemsize
        starts = series.dataoffset + page_bytes * np.arange(n_pages, dtype=np.int64)
        return starts[:, None], np.full((n_pages, 1), page_bytes, dtype=np.int64)
    pages = list(series.pages)
    if len(pages) != n_pages or any(p is None for p in pages):
        raise MovieError(f"{path}: the TIFF has {len(pages)} readable pages where its metadata "
                         f"announces {n_pages}: the file is truncated or damaged")
    lengths = {len(p.dataoffsets) for p in pages}
    if len(lengths) != 1:
        raise MovieError(f"{path}: pages are split into different numbers of strips or tiles; "
                         "re-save the movie with uniform pages")
    offsets = np.array([p.dataoffsets for p in pages], dtype=np.int64)
    counts = np.array([p.databytecounts for p in pages], dtype=np.int64)
    return offsets, counts


def _is_raw(key: Any, offsets: np.ndarray, counts: np.ndarray, frame_bytes: int) -> bool:
    """True when every page is one uncompressed, back-to-back run of its frame's bytes."""
    if key.compression != 1 or not key.is_contiguous or key.fillorder != 1:
        return False
    back_to_back = np.array_equal(offsets[:, 1:], offsets[:, :-1] + counts[:, :-1])
    return bool(back_to_back and np.all(counts.sum(axis=1) == frame_bytes))
