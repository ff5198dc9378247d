"""CaImAn's ``CNMFParams`` groups as small frozen dataclasses (names and defaults of 1.12).

Keys that CaImAn knows but the built-in engine does not use are accepted and kept; each
group lists them in its ``UNUSED`` tuple.
"""

from __future__ import annotations

import dataclasses
from typing import Any

PASSTHROUGH_GROUPS = ("motion", "online", "ring_CNN")


@dataclasses.dataclass(frozen=True)
class DataParams:
    """Dataset facts: frame rate (Hz), indicator decay time (s), pixel size (um)."""

    fr: float = 30.0
    decay_time: float = 0.4
    dxy: tuple[float, float] = (1.0, 1.0)
    fnames: Any = None
    dims: Any = None
    var_name_hdf5: str = "mov"
    caiman_version: Any = None
    last_commit: Any = None
    mmap_F: Any = None
    mmap_C: Any = None
    UNUSED = ("fnames", "dims", "var_name_hdf5", "caiman_version", "last_commit", "mmap_F",
              "mmap_C")


@dataclasses.dataclass(frozen=True)
class PatchParams:
    """Patch grid (``rf`` half-size, ``stride`` overlap) and per-patch options."""

    rf: int | None = None
    stride: int | None = None
    border_pix: int = 0
    only_init: bool = True
    nb_patch: int = 1
    low_rank_background: bool = True
    del_duplicates: bool = False
    remove_very_bad_comps: bool = False
    skip_refinement: bool = False
    p_ssub: int = 2
    p_tsub: int = 2
    p_patch: int = 0
    n_processes: int = 1
    memory_fact: float = 1.0
    in_memory: bool = True
    UNUSED = ("del_duplicates", "p_ssub", "p_tsub", "p_patch", "memory_fact", "in_memory",
              "remove_very_bad_comps")


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
    """Noise estimation options (CaImAn's ``preprocess`` group)."""

    noise_range: tuple[float, float] = (0.25, 0.5)
    noise_method: str = "mean"
    max_num_samples_fft: int = 3072
    lags: int = 5
    p: int = 2
    include_noise: bool = False
    compute_g: bool = False
    n_pixels_per_process: Any = None
    pixels: Any = None
    sn: Any = None
    check_nan: bool = True
    UNUSED = ("include_noise", "compute_g", "n_pixels_per_process", "pixels", "sn", "check_nan")


@dataclasses.dataclass(frozen=True)
class InitParams:
    """Initialisation: ``K`` components per patch, half-size ``gSig``, window ``gSiz``."""

    K: int = 30
    gSig: tuple[int, int] = (5, 5)
    gSiz: tuple[int, int] | None = None
    nb: int = 1
    method_init: str = "greedy_roi"
    ssub: int = 1
    tsub: int = 1
    nIter: int = 5
    normalize_init: bool = True
    center_psf: bool = False
    rolling_sum: bool = True
    rolling_length: int = 100
    SC_kernel: str = "heat"
    SC_sigma: float = 1.0
    SC_thr: float = 0.0
    SC_normalize: bool = True
    SC_use_NN: bool = False
    SC_nnn: int = 20
    alpha_snmf: float = 0.5
    gSig_filt: Any = None
    init_iter: int = 2
    kernel: Any = None
    lambda_gnmf: float = 1.0
    maxIter: int = 5
    max_iter_snmf: int = 500
    min_corr: float = 0.85
    min_pnr: float = 20.0
    options_local_NMF: Any = None
    perc_baseline_snmf: float = 20.0
    ring_size_factor: float = 1.5
    seed_method: str = "auto"
    sigma_smooth_snmf: tuple[float, ...] = (0.5, 0.5, 0.5)
    ssub_B: int = 2
    greedyroi_nmf_init_method: str = "nndsvdar"
    greedyroi_nmf_max_iter: int = 200
    snmf_l1_ratio: float = 0.0
    max_init_frames: int | None = 2000
    UNUSED = ("center_psf", "SC_kernel", "SC_sigma", "SC_thr", "SC_normalize", "SC_use_NN",
              "SC_nnn", "alpha_snmf", "gSig_filt", "init_iter", "kernel", "lambda_gnmf",
              "maxIter", "max_iter_snmf", "min_corr", "min_pnr", "options_local_NMF",
              "perc_baseline_snmf", "ring_size_factor", "seed_method", "sigma_smooth_snmf",
              "ssub_B", "greedyroi_nmf_init_method", "greedyroi_nmf_max_iter",
              "snmf_l1_ratio")
    #: ``max_init_frames`` is a caiman-dask extension (CaImAn has no such key): the greedy
    #: search sees at most this many time-averaged frames, so on a long movie it averages
    #: more than ``tsub`` frames and its memory stops growing with the length (the traces
    #: are then fitted on every frame). None: ``tsub`` as given, whatever the length.

    def window(self) -> tuple[int, int]:
        """Return the odd search window ``gSiz`` (CaImAn default ``2*gSig + 1``)."""
        siz = self.gSiz if self.gSiz is not None else tuple(2 * g + 1 for g in self.gSig)
        return tuple(int(s) + 1 - int(s) % 2 for s in siz)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class SpatialParams:
    """Spatial update: HALS on a dilated support; thresholding of footprints."""

    nb: int = 1
    method_exp: str = "dilate"
    dist: int = 3
    expandCore: Any = None
    extract_cc: bool = True
    maxthr: float = 0.1
    nrgthr: float = 0.9999
    thr_method: str = "nrg"
    method_ls: str = "lasso_lars"
    medw: Any = None
    n_pixels_per_process: int = 1000
    normalize_yyt_one: bool = True
    num_blocks_per_run_spat: int = 20
    se: Any = None
    ss: Any = None
    update_background_components: bool = True
    block_size_spat: int = 5000
    UNUSED = ("method_exp", "dist", "expandCore", "method_ls", "medw", "n_pixels_per_process",
              "normalize_yyt_one", "num_blocks_per_run_spat", "se", "ss", "block_size_spat")


@dataclasses.dataclass(frozen=True)
class TemporalParams:
    """Temporal update: HALS sweeps (``ITER``) then OASIS deconvolution of order ``p``."""

    p: int = 2
    method_deconvolution: str = "oasis"
    bas_nonneg: bool = False
    noise_method: str = "mean"
    noise_range: tuple[float, float] = (0.25, 0.5)
    lags: int = 5
    fudge_factor: float = 0.96
    s_min: float | None = None
    ITER: int = 2
    nb: int = 1
    optimize_g: bool = False
    block_size_temp: int = 5000
    num_blocks_per_run_temp: int = 20
    memory_efficient: bool = False
    solvers: tuple[str, ...] = ("ECOS", "SCS")
    verbosity: bool = False
    UNUSED = ("optimize_g", "block_size_temp", "num_blocks_per_run_temp", "memory_efficient",
              "solvers", "verbosity")


@dataclasses.dataclass(frozen=True)
class MergingParams:
    """Merging of spatially overlapping components whose traces correlate above merge_thr."""

    do_merge: bool = True
    merge_thr: float = 0.8
    merge_parallel: bool = False
    max_merge_area: Any = None
    duplicate_thr: float | None = 0.8
    UNUSED = ("merge_parallel", "max_merge_area")
    #: ``duplicate_thr`` is a caiman-dask extension (CaImAn has no such key): also merge
    #: components whose footprints have cosine similarity above it, whatever their
    #: traces (one neuron seeded twice splits its activity between the copies, so
    #: their traces do not correlate). None keeps CaImAn's rule only.


@dataclasses.dataclass(frozen=True)
class QualityParams:
    """Component evaluation thresholds (trace SNR, spatial r-value, optional min area)."""

    min_SNR: float = 2.5
    rval_thr: float = 0.8
    use_cnn: bool = False
    SNR_lowest: float = 0.5
    rval_lowest: float = -1.0
    min_cnn_thr: float = 0.9
    cnn_lowest: float = 0.1
    gSig_range: Any = None
    use_ecc: bool = False
    max_ecc: float = 3.0
    min_area: float | None = None
    UNUSED = ("min_cnn_thr", "cnn_lowest", "gSig_range", "use_ecc", "max_ecc")
    #: ``min_area`` is a caiman-dask extension (CaImAn has no such key and warns on it):
    #: reject footprints with fewer pixels than this at >= 0.2 of their maximum
    #: (CaImAn leaves shape checks to its CNN). None (default) keeps CaImAn's rule.


GROUPS: dict[str, type] = {
    "data": DataParams, "patch": PatchParams, "preprocess": PreprocessParams,
    "init": InitParams, "spatial": SpatialParams, "temporal": TemporalParams,
    "merging": MergingParams, "quality": QualityParams,
}
