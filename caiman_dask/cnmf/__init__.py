"""CNMF maths of the built-in engine: pure functions on NumPy arrays (no Dask here).

Pixel convention: frames ``(d1, d2)`` are flattened in F order, so pixel (row ``r``,
column ``c``) is row ``r + d1 * c`` of ``Yr`` (npix, T), ``A``, ``b`` and ``sn``.
"""

from caiman_dask.cnmf.assemble import Assembled, assemble_patches, patch_pixels
from caiman_dask.cnmf.evaluate import (
    Evaluation,
    activity_matrix,
    classify,
    evaluate_components,
    evaluation_block,
    footprint_area,
    on_support,
    spatial_rvalues,
    trace_snr,
)
from caiman_dask.cnmf.initialization import InitResult, initialize_components
from caiman_dask.cnmf.merge import MergeResult, merge_components
from caiman_dask.cnmf.noise import estimate_time_constant, get_noise_fft
from caiman_dask.cnmf.oasis import Deconvolution, constrained_foopsi, deconvolve, oasis_ar1
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.patch import PatchResult, fit_patch
from caiman_dask.cnmf.refine import (
    Products,
    SpatialResult,
    block_products,
    finish_spatial,
    noise_block,
    normalize_components,
    spatial_block,
    sum_products,
    temporal_update,
)
from caiman_dask.cnmf.spatial import (
    full_support,
    support_mask,
    threshold_components,
    to_pixels,
)
from caiman_dask.cnmf.temporal import TemporalResult, update_temporal

__all__ = [
    "Assembled", "CNMFParams", "Deconvolution", "Evaluation", "InitResult", "MergeResult",
    "PatchResult", "Products", "SpatialResult", "TemporalResult", "activity_matrix",
    "assemble_patches", "block_products", "classify", "constrained_foopsi", "deconvolve",
    "estimate_time_constant", "evaluate_components", "evaluation_block", "finish_spatial",
    "fit_patch", "footprint_area", "full_support", "get_noise_fft", "initialize_components",
    "merge_components", "noise_block", "normalize_components", "oasis_ar1", "on_support",
    "patch_pixels", "spatial_block", "spatial_rvalues", "sum_products", "support_mask",
    "temporal_update", "threshold_components", "to_pixels", "trace_snr", "update_temporal",
]
