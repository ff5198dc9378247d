"""The CaImAn engine: CaImAn's own per-frame NoRMCorre and per-patch CNMF on arrays.

The drivers keep reading and writing zarr chunks; only the maths of one block / one
patch is CaImAn's (``caiman.motion_correction.tile_and_correct`` frame by frame, and
``CNMF(n_processes=1).fit`` on the patch array, as CaImAn's ``cnmf_patches`` does).
Results come back in the built-in engine's types, with its conventions: shifts are the
shifts applied, ``(rows, columns)``; ``corrected`` includes the ``nonneg_movie`` offset.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from caiman_dask.cnmf.frames import FrameSource, read_frames
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.patch import PatchResult
from caiman_dask.errors import BackendError, ParameterError
from caiman_dask.motion.block import BlockResult, nonneg_offset
from caiman_dask.motion.images import mean_image
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.piecewise import tile_layout
from caiman_dask.motion.rigid import FLAG_NONFINITE


def check_available() -> None:
    """Raise :class:`BackendError` unless CaImAn's motion correction and CNMF import."""
    _caiman("caiman.motion_correction")


def _caiman(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f'engine="caiman" needs CaImAn importable ({exc}); install CaImAn in the '
            f'environment of the client and of every worker, or use engine="builtin"'
        ) from exc


def _frame_options(params: MotionParams, offset: float) -> dict[str, Any]:
    return dict(strides=tuple(params.strides), overlaps=tuple(params.overlaps),
                max_shifts=tuple(params.max_shifts), add_to_movie=offset,
                upsample_factor_grid=params.upsample_factor_grid,
                max_deviation_rigid=params.max_deviation_rigid if params.pw_rigid else 0,
                shifts_opencv=params.shifts_opencv, gSig_filt=params.gSig_filt,
                border_nan=params.border_nan, shifts_interpolate=params.shifts_interpolate)


def register_block(frames: np.ndarray, template: np.ndarray, params: MotionParams, *,
                   ready: Callable[[int], None] | None = None) -> BlockResult:
    """Motion-correct a block with CaImAn's ``tile_and_correct``, frame by frame.

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) raw frames.
    template : ndarray
        (Y, X) template in raw intensities.
    params : MotionParams
        The motion group (2-D only).
    ready : callable, optional
        ``ready(i)`` returns once frame ``i`` is in ``frames`` (a prefetching reader).

    Returns
    -------
    BlockResult
        As :func:`caiman_dask.motion.correct_block`; ``flags`` marks only non-finite
        frames (CaImAn reports no flat / at-bound flags).
    """
    mc = _caiman("caiman.motion_correction")
    if ready is not None:
        ready(len(frames) - 1)  # CaImAn's maths takes the whole block at once
    frames, template = _check(frames, template, params)
    offset = nonneg_offset(template, params)
    options = _frame_options(params, offset)
    count = len(frames)
    corrected = np.empty(frames.shape, np.float32)
    rigid = np.zeros((count, 2), np.float32)
    pw, grid = None, ()
    if params.pw_rigid:  # tiles exist only in the piecewise-rigid pass
        grid = tile_layout(template.shape, strides=params.strides,
                           overlaps=params.overlaps).grid
        pw = np.zeros((count, *grid, 2), np.float32)
    for i, frame in enumerate(frames):
        out, found, _, _ = mc.tile_and_correct(frame, template, **options)
        corrected[i] = out
        rigid[i] = _rigid_shift(mc, frame, template, params, offset, found)
        if pw is not None:
            pw[i] = np.asarray(found, np.float32).reshape(*grid, 2)
    mean = mean_image(corrected)
    if offset:
        corrected += np.float32(offset)
    flags = np.where(np.isfinite(frames).all(axis=(1, 2)), 0, FLAG_NONFINITE).astype(np.uint8)
    return BlockResult(corrected, rigid, pw, mean, flags, offset)


def _rigid_shift(mc: Any, frame: np.ndarray, template: np.ndarray, params: MotionParams,
                 offset: float, found: Any) -> np.ndarray:
    """The rigid shift applied (CaImAn's pw-rigid pass measures it but returns only tiles,
    and ``register_translation`` returns the displacement, the opposite sign)."""
    if not params.pw_rigid:
        return np.asarray(found, np.float32)
    shift, _, _ = mc.register_translation(frame + offset, template + offset, upsample_factor=10,
                                          max_shifts=tuple(params.max_shifts))
    return -np.asarray(shift, np.float32)


def _check(frames: np.ndarray, template: np.ndarray,
           params: MotionParams) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) == 0 or frames.dtype.kind not in "buif":
        raise ParameterError(f"frames must be a non-empty real (n, Y, X) array, got "
                             f"{frames.dtype} {frames.shape}")
    template = np.asarray(template, np.float32)
    if template.shape != frames.shape[1:]:
        raise ParameterError(f"template shape {template.shape} differs from the frame shape "
                             f"{frames.shape[1:]}; build the template from this movie")
    params.validate(frames.shape[1:])
    return frames.astype(np.float32, copy=False), template


def fit_patch(frames: np.ndarray | FrameSource, params: CNMFParams) -> PatchResult:
    """CNMF of one (T, d1, d2) patch with CaImAn's ``CNMF(n_processes=1).fit`` (a source
    is read whole: CaImAn holds the patch in memory).

    ``params`` are used as given (like the built-in ``fit_patch``), with the patch
    group switched to a single patch (``rf=None``) as CaImAn's ``cnmf_patches`` does.
    """
    cnmf = _caiman("caiman.source_extraction.cnmf.cnmf")
    cm_params = _caiman("caiman.source_extraction.cnmf.params")
    if isinstance(frames, FrameSource):  # CaImAn fits the whole patch array
        frames = read_frames(frames)
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 3:
        raise ParameterError(f"fit_patch needs a (T, d1, d2) array, got {frames.shape}")
    opts = cm_params.CNMFParams(params_dict=_known_groups(cm_params, params))
    opts.set("patch", {"n_processes": 1, "rf": None, "stride": None})
    model = cnmf.CNMF(n_processes=1, params=opts, dview=None)
    model.fit(frames)
    return _patch_result(model.estimates, (int(frames.shape[1]), int(frames.shape[2])),
                         frames.shape[0])


def _known_groups(cm_params: Any, params: CNMFParams) -> dict[str, dict[str, Any]]:
    """Our groups, keeping only keys CaImAn's ``CNMFParams`` takes there (it sets ``nb``
    only through ``init`` and logs every other key it does not consume)."""
    defaults = cm_params.CNMFParams().to_dict()

    def takes(group: str, key: str) -> bool:
        return key in defaults[group] and (key != "nb" or group == "init")

    return {group: {k: v for k, v in values.items() if takes(group, k)}
            for group, values in params.to_dict().items() if group in defaults}


def _ragged_rows(values: Any, k: int) -> np.ndarray:
    """(k, width) from CaImAn's per-component lists (arrays of any length, or None)."""
    if values is None:
        return np.zeros((k, 0))
    items = [np.ravel(np.asarray(v, float)) for v in values]
    if len(items) != k:
        raise ParameterError(f"CaImAn returned {len(items)} per-component values for {k} "
                             "components")
    out = np.zeros((k, max((len(i) for i in items), default=0)))
    for row, item in zip(out, items, strict=True):
        row[:len(item)] = item
    return out


def _patch_result(est: Any, dims: tuple[int, int], n_frames: int) -> PatchResult:
    A = sp.csc_matrix(est.A)
    k = A.shape[1]

    def traces(value: Any) -> np.ndarray:
        return np.zeros((k, n_frames)) if value is None else np.asarray(value, float)

    def scalars(value: Any) -> np.ndarray:
        return np.zeros(k) if value is None else _ragged_rows(value, k)[:, 0]

    return PatchResult(A=A, C=traces(est.C), S=traces(est.S), YrA=traces(est.YrA),
                       b=np.asarray(est.b, float), f=np.asarray(est.f, float),
                       bl=scalars(est.bl), c1=scalars(est.c1),
                       neurons_sn=scalars(est.neurons_sn), g=_ragged_rows(est.g, k),
                       sn=np.asarray(est.sn, float).ravel(), dims=dims)
