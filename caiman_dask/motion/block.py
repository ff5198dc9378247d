"""Block-level entry points for the driver: correct a block of frames, or apply shifts.

One task of the driver corrects one time block: :func:`correct_block` registers every frame
against the template (rigid, then tiles when ``pw_rigid``), shifts it, and returns the
corrected float32 frames with their shifts and the block's mean image (the driver's input
for the next template). :func:`apply_block_shifts` applies shifts found on one channel to
another (CaImAn's ``apply_shifts_movie``); both use the same code to move pixels, so applying
a block's own shifts to it reproduces its corrected frames exactly.

``nonneg_movie``: the corrected frames get ``offset = -min_mov`` added (CaImAn's
``add_to_movie``) so a movie whose minimum is ``min_mov`` becomes non-negative (cubic
interpolation can still undershoot slightly). With ``min_mov=None`` the template's minimum
stands in for it (CaImAn's fallback), so every block corrected against the same template
gets the same offset. The mean image never includes the offset.

Threads: both functions run on one thread, the driver's parallelism being one task per
block. BLAS (used for the small matrix DFTs, where extra threads only spin) is limited to one
thread for the duration of a call with threadpoolctl; OpenCV's thread count is left to the
worker setup (``cv2.setNumThreads``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from caiman_dask.errors import ParameterError
from caiman_dask.motion.images import mean_image
from caiman_dask.motion.moving import FrameMover
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.piecewise import TileRegistrar
from caiman_dask.motion.rigid import RigidRegistrar, clean_nonfinite


@dataclasses.dataclass(frozen=True)
class BlockShifts:
    """Shifts to apply to a block: rigid (n, 2) and pw-rigid tile shifts (n, ty, tx, 2).

    Shifts are ``(rows, columns)`` in pixels, the shift to apply to each frame
    (``corrected(y, x) = frame(y - dy, x - dx)``). ``offset`` is the ``nonneg_movie``
    offset that was added to the corrected frames.
    """

    rigid: np.ndarray
    pw: np.ndarray | None = None
    offset: float = 0.0


@dataclasses.dataclass(frozen=True)
class BlockResult:
    """Result of :func:`correct_block` for one block of ``n`` frames.

    Attributes
    ----------
    corrected : ndarray
        (n, Y, X) float32 corrected frames, ``offset`` included.
    rigid_shifts : ndarray
        (n, 2) float32 rigid shifts applied (pw-rigid: the shifts bounding the tiles).
    pw_shifts : ndarray or None
        (n, ty, tx, 2) float32 tile shifts applied, when ``pw_rigid``.
    mean_image : ndarray
        (Y, X) float32 mean corrected frame without the offset, NaN-aware (a pixel is NaN
        only if it is NaN in every frame).
    flags : ndarray
        (n,) uint8 bit mask per frame: ``FLAG_FLAT``, ``FLAG_NONFINITE``, ``FLAG_AT_BOUND``.
    offset : float
        The ``nonneg_movie`` offset added to ``corrected`` (0 when off).
    """

    corrected: np.ndarray
    rigid_shifts: np.ndarray
    pw_shifts: np.ndarray | None
    mean_image: np.ndarray
    flags: np.ndarray
    offset: float

    @property
    def shifts(self) -> BlockShifts:
        """The shifts of this block, for :func:`apply_block_shifts`."""
        return BlockShifts(self.rigid_shifts, self.pw_shifts, self.offset)


def nonneg_offset(template: np.ndarray, params: MotionParams) -> float:
    """Offset added to corrected frames: ``-min_mov``, else ``-min(template)``, else 0."""
    if not params.nonneg_movie:
        return 0.0
    if params.min_mov is not None:
        return -float(params.min_mov)
    finite = template[np.isfinite(template)]
    return -float(finite.min()) if finite.size else 0.0


def _dims(frames: np.ndarray) -> tuple[int, int]:
    return (int(frames.shape[1]), int(frames.shape[2]))


def _check_frames(frames: np.ndarray, params: MotionParams) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) == 0:
        raise ParameterError(f"frames must be a non-empty (n, Y, X) array, got shape "
                             f"{frames.shape}")
    if frames.dtype.kind not in "buif":
        raise ParameterError(f"frames must hold real numbers, got dtype {frames.dtype}")
    params.validate(frames.shape[1:])
    return frames


def _check_template(template: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    template = np.asarray(template, dtype=np.float32)
    if template.shape != tuple(dims):
        raise ParameterError(f"template shape {template.shape} differs from the frame shape "
                             f"{tuple(dims)}; build the template from this movie")
    if not np.isfinite(template).any():
        raise ParameterError("template has no finite pixel; rebuild it (initial_template / "
                             "rigid_template) from frames that are not all NaN")
    return template


def correct_block(frames: np.ndarray, template: np.ndarray, params: MotionParams, *,
                  ready: Callable[[int], None] | None = None) -> BlockResult:
    """Motion-correct one block of frames against a template (NoRMCorre).

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) raw frames, any real dtype.
    template : ndarray
        (Y, X) template in raw intensities (see :mod:`~caiman_dask.motion.template`).
    params : MotionParams
        Motion parameters; validated against the frame shape.
    ready : callable, optional
        ``ready(i)`` is called before frame ``i`` is first read and returns once it is
        in ``frames``: lets a caller fill ``frames`` while earlier frames register.

    Returns
    -------
    BlockResult
        Corrected frames, shifts, flags and the block's mean image.

    Raises
    ------
    ParameterError
        For frames that are not (n, Y, X) real arrays, a template of another shape or
        without finite pixels, or parameters inconsistent with the frame shape.
    """
    frames = _check_frames(frames, params)
    template = _check_template(template, frames.shape[1:])
    with threadpool_limits(limits=1, user_api="blas"):
        return _correct(frames, template, params, ready)


class _Corrector:
    """Registers and shifts the frames of one block against one template."""

    def __init__(self, template: np.ndarray, params: MotionParams) -> None:
        self.registrar = RigidRegistrar(template, params)
        self.tiles = TileRegistrar(self.registrar.image, params) if params.pw_rigid else None
        dims = (int(template.shape[0]), int(template.shape[1]))
        self.mover = FrameMover(dims, params, piecewise=self.tiles is not None)

    def correct(self, frame: np.ndarray, out: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray | None, int]:
        """Correct one float32 frame into ``out``; return (shift, tile shifts, flags)."""
        found = self.registrar.register(frame)
        shift = found.shift.astype(np.float32).astype(np.float64)  # as stored and reapplied
        tile_shifts = None
        if self.tiles is not None:
            tile_shifts = self.tiles.register(found.image, shift, mean_level=found.mean_level)
        self.mover.move(found.source, shift, tile_shifts, out, spectrum=found.spectrum,
                        nan_mask=found.nan_mask)
        return shift, tile_shifts, found.flags


def _correct(frames: np.ndarray, template: np.ndarray, params: MotionParams,
             ready: Callable[[int], None] | None = None) -> BlockResult:
    corrector = _Corrector(template, params)
    count, dims = len(frames), _dims(frames)
    corrected = np.empty((count, *dims), np.float32)
    rigid = np.zeros((count, 2), np.float32)
    grid = None if corrector.tiles is None else corrector.tiles.layout.grid
    pw = None if grid is None else np.zeros((count, *grid, 2), np.float32)
    flags = np.zeros(count, np.uint8)
    offset = nonneg_offset(template, params)
    frame, total = np.empty(dims, np.float32), np.zeros(dims, np.float32)
    for index in range(count):
        if ready is not None:
            ready(index)
        np.copyto(frame, frames[index], casting="unsafe")
        rigid[index], tiles, flags[index] = corrector.correct(frame, corrected[index])
        if pw is not None:
            pw[index] = tiles
        if offset:
            corrected[index] += offset
        np.add(total, corrected[index], out=total)
    mean = mean_image(corrected, total=total) - np.float32(offset)
    return BlockResult(corrected, rigid, pw, mean, flags, offset)


def _check_shifts(shifts: BlockShifts | BlockResult, count: int) -> BlockShifts:
    if isinstance(shifts, BlockResult):
        shifts = shifts.shifts
    rigid = np.asarray(shifts.rigid, dtype=np.float64)
    if rigid.shape != (count, 2):
        raise ParameterError(f"rigid shifts of shape {rigid.shape} do not match {count} "
                             "frames; pass the shifts computed for this block")
    return shifts


def apply_block_shifts(frames: np.ndarray, shifts: BlockShifts | BlockResult,
                       params: MotionParams) -> np.ndarray:
    """Apply shifts computed by :func:`correct_block` to a block (e.g. another channel).

    Parameters
    ----------
    frames : ndarray
        (n, Y, X) raw frames of the same geometry as the block the shifts come from.
    shifts : BlockShifts or BlockResult
        Rigid shifts (n, 2) and, when not None, tile shifts (n, ty, tx, 2), which are used.
    params : MotionParams
        ``shifts_opencv``, ``border_nan``, tiles (``strides``/``overlaps``) and the offset:
        ``-min_mov`` when ``nonneg_movie`` and ``min_mov`` is set, else ``shifts.offset``
        when ``nonneg_movie``, else 0. Set ``min_mov`` for a channel of another range.

    Returns
    -------
    ndarray
        (n, Y, X) float32 corrected frames.
    """
    frames = _check_frames(frames, params)
    count = len(frames)
    shifts = _check_shifts(shifts, count)
    mover = FrameMover(_dims(frames), params, piecewise=shifts.pw is not None)
    pw_shape = None if shifts.pw is None else np.shape(shifts.pw)
    if mover.layout is not None and pw_shape != (count, *mover.layout.grid, 2):
        raise ParameterError(f"tile shifts of shape {pw_shape} do not match "
                             f"{count} frames of {mover.layout.grid} tiles "
                             "(motion.strides/overlaps)")
    offset = 0.0
    if params.nonneg_movie:
        offset = -params.min_mov if params.min_mov is not None else float(shifts.offset)
    with threadpool_limits(limits=1, user_api="blas"):
        return _apply(frames, shifts, mover, offset)


def _apply(frames: np.ndarray, shifts: BlockShifts, mover: FrameMover,
           offset: float) -> np.ndarray:
    dims = _dims(frames)
    corrected = np.empty((len(frames), *dims), np.float32)
    frame, clean = np.empty(dims, np.float32), np.empty(dims, np.float32)
    for index in range(len(frames)):
        np.copyto(frame, frames[index], casting="unsafe")
        source, mask = frame, None
        if not np.isfinite(frame.sum()):
            source, mask = clean, clean_nonfinite(frame, clean)
        tiles = None if shifts.pw is None else np.asarray(shifts.pw[index])
        mover.move(source, np.asarray(shifts.rigid[index], dtype=np.float64), tiles,
                   corrected[index], nan_mask=mask)
        if offset:
            corrected[index] += offset
    return corrected
