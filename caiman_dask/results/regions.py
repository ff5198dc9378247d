"""Manual ROIs in neurofinder's ``regions.json`` format.

The file is a JSON list of objects, each with ``"coordinates": [[row, col], ...]`` (the
pixels of one ROI; neurofinder adds an ``"id"``). Masks come back as a boolean
``(d1*d2, K)`` csc matrix in CaImAn's F-order convention (pixel ``(r, c)`` is row
``r + d1*c``) or as a dense ``(K, d1, d2)`` stack.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from caiman_dask.errors import ResultsError, ResultsNotFoundError
from caiman_dask.results.estimates import flat_pixel_index, sparse_to_masks


def read_regions(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Read ``regions.json`` into one ``(n_i, 2)`` int array of ``[row, col]`` per ROI.

    Parameters
    ----------
    path : str or path-like
        The neurofinder ``regions.json`` file.

    Returns
    -------
    list of numpy.ndarray
        Pixel coordinates of each ROI, in file order.

    Raises
    ------
    ResultsNotFoundError
        If the file does not exist.
    ResultsError
        If the file is not JSON or an entry is not a list of ``[row, col]`` integer pairs.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            entries = json.load(fh)
    except FileNotFoundError:
        raise ResultsNotFoundError(f"regions file {path!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"regions file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ResultsError(
            f"regions file {path!r} must hold a JSON list of {{'coordinates': [[row, col], ...]}}"
            f" objects, found a {type(entries).__name__}"
        )
    return [_entry_coordinates(entry, path, i) for i, entry in enumerate(entries)]


def _entry_coordinates(entry: Any, path: str, i: int) -> np.ndarray:
    where = f"regions file {path!r}, entry {i}"
    if not isinstance(entry, dict) or "coordinates" not in entry:
        raise ResultsError(f"{where}: expected an object with a 'coordinates' list")
    coords = entry["coordinates"]
    ok = isinstance(coords, list) and len(coords) > 0 and all(
        isinstance(p, list) and len(p) == 2 and all(_is_int(v) for v in p) for p in coords
    )
    if not ok:
        raise ResultsError(
            f"{where}: 'coordinates' must be a non-empty list of [row, col] integer pairs"
        )
    return np.asarray(coords, dtype=np.int64).reshape(-1, 2)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def coordinates_to_sparse(
    coords: list[np.ndarray], dims: tuple[int, int], *, source: str = "regions"
) -> sp.csc_matrix:
    """Turn per-ROI ``[row, col]`` arrays into a boolean ``(d1*d2, K)`` csc matrix (F order).

    Raises :class:`~caiman_dask.errors.ResultsError` naming ``source`` and the entry when
    a pixel lies outside the ``dims`` frame. Repeated pixels are stored once.
    """
    d1, d2 = (int(d) for d in dims)
    for i, c in enumerate(coords):
        bad = (c[:, 0] < 0) | (c[:, 0] >= d1) | (c[:, 1] < 0) | (c[:, 1] >= d2)
        if bad.any():
            r, col = c[np.argmax(bad)]
            raise ResultsError(
                f"{source}, entry {i}: pixel [row {r}, col {col}] lies outside the "
                f"{d1}x{d2} frame; pass the movie's dims (d1, d2) the ROIs were drawn on"
            )
    lengths = np.array([len(c) for c in coords], dtype=np.int64)
    stacked = np.concatenate(coords) if coords else np.zeros((0, 2), np.int64)
    rows = flat_pixel_index(stacked[:, 0], stacked[:, 1], d1)
    cols = np.repeat(np.arange(len(coords)), lengths)
    ones = np.ones(rows.size, dtype=np.int32)
    A = sp.csc_matrix((ones, (rows, cols)), shape=(d1 * d2, len(coords)))
    A.sum_duplicates()
    return sp.csc_matrix((np.ones(A.nnz, dtype=bool), A.indices, A.indptr), shape=A.shape)


def load_regions(
    path: str | os.PathLike[str], dims: tuple[int, int], *, dense: bool = False
) -> sp.csc_matrix | np.ndarray:
    """Load ``regions.json`` as masks on a ``dims`` frame.

    Parameters
    ----------
    path : str or path-like
        The neurofinder ``regions.json`` file.
    dims : tuple of int
        Frame shape ``(d1, d2)`` the ROIs were drawn on.
    dense : bool, optional
        Return a boolean ``(K, d1, d2)`` array instead of the sparse matrix.

    Returns
    -------
    scipy.sparse.csc_matrix or numpy.ndarray
        Boolean ``(d1*d2, K)`` masks in F-order pixels, or the ``(K, d1, d2)`` stack.
    """
    A = coordinates_to_sparse(read_regions(path), dims, source=f"regions file {os.fspath(path)!r}")
    return sparse_to_masks(A, dims) if dense else A
