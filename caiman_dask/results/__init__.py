"""Results: estimates, CaImAn-compatible HDF5 files, manual ROIs and scoring."""

from __future__ import annotations

from caiman_dask.results.estimates import (
    Estimates,
    centroids_of,
    flat_pixel_index,
    masks_to_sparse,
    sparse_to_masks,
)
from caiman_dask.results.hdf5 import PARAM_GROUPS, load_estimates, load_extra, save_estimates
from caiman_dask.results.regions import coordinates_to_sparse, load_regions, read_regions
from caiman_dask.results.score import ScoreResult, binarize_columns, match_pairs, score, score_both

__all__ = [
    "PARAM_GROUPS",
    "Estimates",
    "ScoreResult",
    "binarize_columns",
    "centroids_of",
    "coordinates_to_sparse",
    "flat_pixel_index",
    "load_estimates",
    "load_extra",
    "load_regions",
    "masks_to_sparse",
    "match_pairs",
    "read_regions",
    "save_estimates",
    "score",
    "score_both",
    "sparse_to_masks",
]
