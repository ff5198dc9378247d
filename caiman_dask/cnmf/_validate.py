"""Value checks of :class:`~caiman_dask.cnmf.params.CNMFParams` against a frame shape."""

from __future__ import annotations

from typing import Any

from caiman_dask.errors import ParameterError


def _require(ok: bool, name: str, value: Any, why: str) -> None:
    """Raise ParameterError naming parameter ``name`` unless ``ok``."""
    if not ok:
        raise ParameterError(f"CNMF parameter {name}={value!r} is invalid: {why}")


def _positive_pair(name: str, value: Any) -> None:
    ok = isinstance(value, tuple) and len(value) == 2 and all(
        isinstance(v, int | float) and v > 0 for v in value)
    _require(ok, name, value, "give two positive numbers, e.g. [5, 5]")


def _check_patch(params: Any, dims: tuple[int, int]) -> None:
    patch = params.patch
    rf, stride = patch.rf, patch.stride
    _require(patch.border_pix >= 0 and 2 * patch.border_pix < min(dims), "patch.border_pix",
             patch.border_pix, f"must be >= 0 and leave pixels of the {dims} frame")
    if rf is None:
        return
    usable = min(dims) - 2 * patch.border_pix
    _require(isinstance(rf, int) and rf > 0, "patch.rf", rf, "must be a positive integer")
    _require(2 * rf + 1 <= usable, "patch.rf", rf,
             f"a patch of 2*rf+1={2 * rf + 1} px is larger than the frame {dims} "
             f"(minus border_pix); use rf <= {(usable - 1) // 2} or rf=None (no patches)")
    if stride is not None:
        _require(isinstance(stride, int) and 0 <= stride < 2 * rf, "patch.stride", stride,
                 f"the overlap must satisfy 0 <= stride < 2*rf = {2 * rf}")
    _require(patch.nb_patch >= 0, "patch.nb_patch", patch.nb_patch, "must be >= 0")


def _check_init(params: Any, dims: tuple[int, int]) -> None:
    init = params.init
    _require(isinstance(init.K, int) and init.K > 0, "init.K", init.K,
             "the number of components per patch must be a positive integer")
    _positive_pair("init.gSig", init.gSig)
    if init.gSiz is not None:
        _positive_pair("init.gSiz", init.gSiz)
    extent = min(dims) if params.patch.rf is None else 2 * params.patch.rf + 1
    _require(2 * max(init.gSig) < extent, "init.gSig", init.gSig,
             f"a neuron of half-size gSig does not fit in a patch/frame of {extent} px; "
             "lower gSig or raise patch.rf")
    _require(init.nb >= 0, "init.nb", init.nb, "must be >= 0")
    _require(init.method_init == "greedy_roi", "init.method_init", init.method_init,
             "the built-in engine implements 'greedy_roi' only; use the CaImAn engine")
    _require(init.max_init_frames is None or (isinstance(init.max_init_frames, int)
                                              and init.max_init_frames >= 8),
             "init.max_init_frames", init.max_init_frames,
             "must be None (no limit) or an integer >= 8")
    for name in ("ssub", "tsub", "nIter", "rolling_length"):
        value = getattr(init, name)
        _require(isinstance(value, int) and value >= 1, f"init.{name}", value,
                 "must be an integer >= 1")


def _check_temporal(params: Any) -> None:
    temporal = params.temporal
    _require(temporal.p in (0, 1, 2), "temporal.p", temporal.p, "the AR order must be 0, 1 or 2")
    _require(temporal.method_deconvolution == "oasis", "temporal.method_deconvolution",
             temporal.method_deconvolution, "the built-in engine implements 'oasis' only")
    _require(temporal.noise_method in ("mean", "median", "logmexp"), "temporal.noise_method",
             temporal.noise_method, "use 'mean', 'median' or 'logmexp'")
    low, high = temporal.noise_range
    _require(0 <= low < high <= 0.5, "temporal.noise_range", temporal.noise_range,
             "must be two frequencies 0 <= low < high <= 0.5 (fraction of the frame rate)")
    _require(temporal.ITER >= 1, "temporal.ITER", temporal.ITER, "must be >= 1")
    _require(0 < temporal.fudge_factor <= 1, "temporal.fudge_factor", temporal.fudge_factor,
             "must be in (0, 1]")
    _require(temporal.lags >= temporal.p, "temporal.lags", temporal.lags, "must be >= p")


def _check_rest(params: Any) -> None:
    _require(params.data.fr > 0, "data.fr", params.data.fr, "the frame rate must be > 0 Hz")
    _require(params.data.decay_time > 0, "data.decay_time", params.data.decay_time,
             "must be > 0 s")
    _require(-1 <= params.merging.merge_thr <= 1, "merging.merge_thr", params.merging.merge_thr,
             "a correlation threshold must lie in [-1, 1]")
    dup = params.merging.duplicate_thr
    _require(dup is None or 0 < dup <= 1, "merging.duplicate_thr", dup,
             "must be None (off) or a cosine similarity in (0, 1]")
    quality = params.quality
    for name in ("min_SNR", "SNR_lowest", "rval_thr", "rval_lowest"):
        value = getattr(quality, name)
        _require(isinstance(value, int | float) and not isinstance(value, bool),
                 f"quality.{name}", value, "must be a number")
    _require(not quality.use_cnn, "quality.use_cnn", quality.use_cnn,
             "the built-in engine has no CNN classifier; set quality.use_cnn=false or use "
             "the CaImAn engine")
    _require(-1 <= quality.rval_thr <= 1, "quality.rval_thr", quality.rval_thr,
             "must lie in [-1, 1]")
    _require(quality.min_area is None or quality.min_area >= 0, "quality.min_area",
             quality.min_area, "must be None (off) or a number of pixels >= 0")
    _require(0 < params.spatial.nrgthr <= 1, "spatial.nrgthr", params.spatial.nrgthr,
             "must lie in (0, 1]")
    _require(params.spatial.thr_method in ("nrg", "max"), "spatial.thr_method",
             params.spatial.thr_method, "use 'nrg' or 'max'")


def validate_params(params: Any, dims: tuple[int, int]) -> None:
    """Raise ParameterError for the first invalid value of ``params`` on frames ``dims``."""
    _require(len(dims) == 2 and min(dims) > 0, "dims", dims, "need a 2-D frame shape")
    _check_patch(params, dims)
    _check_init(params, dims)
    _check_temporal(params)
    _check_rest(params)
