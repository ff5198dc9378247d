"""HDF5 and NWB movies, read block by block through h5py (which reads only the
HDF5 chunks a block touches).

The dataset is taken as stored: ``(T, Y, X)`` or ``(T, Z, Y, X)``, as CaImAn reads it.
A file stored in another axis order needs ``axes=``, the letters of its stored axes
(e.g. ``axes="YXT"`` for SIMA's example, stored (Y, X, T)). NWB files: the movie is
``acquisition/<name>/data`` and the frame rate is ``acquisition/<name>/starting_time``'s
``rate`` attribute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from caiman_dask.errors import MovieError, MovieNotFoundError
from caiman_dask.movie.lazy import (
    BlockReader,
    Part,
    Region,
    axes_permutation,
    frame_chunks,
    lazy_array,
    stored_chunks,
)
from caiman_dask.movie.model import SourceFile, check_dtype, dims_for
from caiman_dask.movie.paths import filesystem, is_url, source_size


@dataclass(frozen=True, eq=False)
class Hdf5Reader(BlockReader):
    """Reads blocks of one HDF5 dataset in its stored axis order."""

    url: str
    storage_options: dict[str, Any] | None
    dataset: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def read(self, region: Region) -> np.ndarray:
        """Read ``region`` (stored axis order) from the dataset."""
        with open_h5(self.url, self.storage_options) as f:
            block = f[self.dataset][region]
        return np.asarray(block, dtype=self.dtype)


@contextlib.contextmanager
def open_h5(url: str, storage_options: dict[str, Any] | None) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only: a local path directly, a URL through fsspec."""
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(h5py.File(_h5_target(url, storage_options, stack), "r"))
        except OSError as exc:
            raise MovieError(f"{url}: not a readable HDF5 file (corrupt or truncated?): "
                             f"{exc}") from None
        yield f


def _h5_target(url: str, storage_options: dict[str, Any] | None,
               stack: contextlib.ExitStack) -> Any:
    """A local path as is; a URL as an open fsspec file (closed with ``stack``)."""
    if not is_url(url):
        return url
    fs, inner = filesystem(url, storage_options)
    return stack.enter_context(fs.open(inner, "rb"))


def open_hdf5_movie(path: str, *, dataset: str | None = None, axes: str | None = None,
                    storage_options: dict[str, Any] | None = None, chunks: Any = None) -> Part:
    """Open the movie dataset of an HDF5 or NWB file lazily.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    dataset : str, optional
        Dataset path in the file, an NWB series name, or a group holding ``data``;
        default: the only 3-D/4-D dataset (NWB: the only ``acquisition/*/data``).
    axes : str, optional
        Stored axis letters, e.g. ``"YXT"``; default ``"TYX"`` / ``"TZYX"``.
    storage_options : dict, optional
        fsspec options for a URL.
    chunks : tuple, optional
        Dask chunks in movie order; default whole frames, a multiple of the HDF5 chunks.

    Raises
    ------
    MovieNotFoundError
        ``dataset`` is not in the file.
    MovieError
        No or several candidate datasets, or an unsupported pixel type.
    """
    with open_h5(path, storage_options) as f:
        name = find_dataset(f, dataset, path)
        ds = f[name]
        shape, h5chunks = tuple(int(n) for n in ds.shape), ds.chunks
        dtype = check_dtype(ds.dtype, f"{path}:{name}")
        fr = nwb_rate(f, name)
    where = f"{path}:{name}"
    perm = axes_permutation(axes or "".join(dims_for(len(shape), where)), len(shape), where)
    if shape[perm[0]] == 0:
        raise MovieError(f"{where} has no frames")
    reader = Hdf5Reader(path, storage_options, name, shape, dtype)
    unit = h5chunks[perm[0]] if h5chunks else 1
    chunks = stored_chunks(chunks, perm) or frame_chunks(shape, dtype.itemsize,
                                                         time_axis=perm[0], time_unit=unit)
    data = lazy_array(reader, chunks, kind="hdf5").transpose(perm)
    size = source_size(path, storage_options)
    return Part(data=data, source=SourceFile(path, size, "hdf5"), fr=fr)


def find_dataset(f: h5py.File, dataset: str | None, path: str) -> str:
    """Return the full name of the movie dataset (see :func:`open_hdf5_movie`)."""
    candidates = _candidates(f)
    if dataset is not None:
        for name in (dataset, f"{dataset}/data", f"acquisition/{dataset}/data"):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset):
                return obj.name
        raise MovieNotFoundError(f"{path}: no dataset {dataset!r}; 3-D/4-D datasets in this "
                                 f"file: {', '.join(candidates) or 'none'}")
    nwb = [c for c in candidates if c.startswith("/acquisition/") and c.endswith("/data")]
    candidates = nwb or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise MovieError(f"{path}: no 3-D or 4-D dataset in this HDF5 file, so no movie")
    raise MovieError(f"{path}: several datasets could be the movie: {', '.join(candidates)}; "
                     "choose one with dataset=... (--dataset on the command line)")


def _candidates(f: h5py.File) -> list[str]:
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4):
            found.append("/" + name)

    f.visititems(visit)
    return sorted(found)


def nwb_rate(f: h5py.File, name: str) -> float | None:
    """Frame rate of an NWB series (``starting_time``'s ``rate``), else None."""
    parent = name.rsplit("/", 1)[0]
    start = f.get(f"{parent}/starting_time")
    rate = start.attrs.get("rate") if isinstance(start, h5py.Dataset) else None
    return float(rate) if rate is not None and float(rate) > 0 else None
