"""Apply shifts found on one movie to another (a second channel), block by block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from caiman_dask.errors import ParameterError
from caiman_dask.motion.block import BlockShifts, apply_block_shifts
from caiman_dask.motion.driver import (
    MotionResult,
    corrected_attrs,
    plan_for,
    read_sample,
    with_min_mov,
)
from caiman_dask.motion.params import MotionParams
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.store import create_store, finish_store, prepare_destination
from caiman_dask.movie.writer import BlockWritten
from caiman_dask.movie.zarrio import ATTRS_KEY, corrected_codecs, open_store, zarr_store
from caiman_dask.progress import Progress
from caiman_dask.view.base import BaseView


@dataclass(frozen=True)
class ApplyTask:
    """Frames ``[start, stop)`` of ``source`` to move by ``shifts`` into ``dest``."""

    start: int
    stop: int
    source: ArrayRef
    dest: ArrayRef
    shifts: BlockShifts


def apply_store_block(item: tuple[ApplyTask, MotionParams]) -> BlockWritten:
    """Task: read a block, apply its shifts, write it."""
    task, params = item
    frames = task.source.open()[task.start : task.stop]
    moved = apply_block_shifts(frames, task.shifts, params)
    task.dest.open(write=True)[task.start : task.stop] = moved
    return BlockWritten((task.start,), (task.stop,), int(moved.nbytes))


def load_motion(corrected: str, storage_options: dict[str, Any] | None = None
                ) -> tuple[MotionResult, MotionParams]:
    """Shifts, template and parameters recorded in a corrected store."""
    group = zarr.open_group(zarr_store(corrected, storage_options), mode="r")
    attrs = group.attrs[ATTRS_KEY]
    if "motion" not in attrs:
        raise ParameterError(f"{corrected} is not a motion-corrected store (no 'motion' record)")
    params = MotionParams.from_dict(attrs["motion"]["params"])
    pw = group["pw_shifts"][...] if "pw_shifts" in group else None
    result = MotionResult(corrected, group["template"][...], group["rigid_shifts"][...], pw,
                          group["flags"][...], float(attrs["motion"].get("offset", 0.0)))
    return result, params


def apply_shifts(movie: str, shifts: str | MotionResult, out: str, *, view: BaseView,
                 params: MotionParams | dict[str, Any] | None = None,
                 storage_options: dict[str, Any] | None = None,
                 overwrite: bool = False) -> str:
    """Apply computed shifts to another movie of the same geometry (e.g. a second channel).

    Parameters
    ----------
    movie : str
        caiman-dask store to move (same (T, Y, X) as the registered movie).
    shifts : str or MotionResult
        A corrected store written by ``motion_correct`` (its recorded shifts and
        parameters are used), or a ``MotionResult`` with ``params`` given.
    out : str
        Store to create for the moved movie.
    view : BaseView
        Where the block tasks run.
    params : MotionParams or dict, optional
        Registration parameters; default those recorded with the shifts. ``min_mov`` is
        taken from this movie (the same template sample as ``motion_correct`` reads), not
        from the registered one, so each channel gets its own ``nonneg_movie`` offset.

    Returns
    -------
    str
        ``out``.
    """
    result, recorded = (load_motion(shifts, storage_options) if isinstance(shifts, str)
                        else (shifts, None))
    params = params if isinstance(params, MotionParams) else (
        MotionParams.from_dict(params) if params is not None else recorded)
    if params is None:
        raise ParameterError("apply_shifts needs params when shifts is a MotionResult")
    stored = open_store(movie, storage_options=storage_options)
    if stored.shape[0] != len(result.rigid_shifts):
        raise ParameterError(f"{movie} has {stored.shape[0]} frames but the shifts cover "
                             f"{len(result.rigid_shifts)}: apply shifts of the same recording")
    params.validate(stored.shape[1:])
    src, dst = ArrayRef(movie, storage_options), ArrayRef(out, storage_options)
    sample = read_sample(src, stored.shape[0], stored.data.chunksize[0], view)
    params = with_min_mov(params.replace(min_mov=None), sample)
    plan = plan_for(stored, params, None)
    prepare_destination(out, storage_options, overwrite=overwrite)
    attrs = corrected_attrs(movie, storage_options, plan, params)
    group, _ = create_store(out, storage_options, plan.corrected, attrs,
                            compressors=corrected_codecs())
    tasks = [ApplyTask(a, b, src, dst, _block_shifts(result, a, b)) for a, b in plan.time_blocks]
    written = []
    with Progress("apply shifts", total=len(tasks)) as progress:
        for block in view.imap_unordered(apply_store_block, [(t, params) for t in tasks]):
            written.append(block)
            progress.advance()
    finish_store(group, attrs, written, expected=int(np.prod(stored.shape)) * 4)
    return out


def _block_shifts(result: MotionResult, start: int, stop: int) -> BlockShifts:
    pw = None if result.pw_shifts is None else result.pw_shifts[start:stop]
    return BlockShifts(result.rigid_shifts[start:stop], pw, result.offset)
