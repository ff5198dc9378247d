"""Motion-correction parameters: CaImAn's ``motion`` group as one frozen dataclass.

Names and defaults follow CaImAn 1.12 (``CNMFParams.motion`` / ``MotionCorrect``), so a
CaImAn parameter file can be read with :meth:`MotionParams.from_dict`. Keys CaImAn knows
but this engine does not use are accepted and kept for a loss-free :meth:`~MotionParams.to_dict`
(``UNUSED``); ``is3D=True`` and a cropping ``indices`` are refused by
:meth:`~MotionParams.validate` because they are not implemented.

Axis order everywhere is numpy's: ``(rows, columns)`` = ``(y, x)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from caiman_dask.errors import ConfigError, ParameterError, did_you_mean
from caiman_dask.geometry import tile_axes

BORDER_MODES = (True, False, "copy", "min")
_MIN_INNER = 4  # pixels of template left inside the search margin (see registration.py)
_PAIRS = ("max_shifts", "strides", "overlaps")
_INTS = ("max_deviation_rigid", "upsample_factor_grid", "niter_rig", "num_frames_split")
_BOOLS = ("pw_rigid", "shifts_opencv", "nonneg_movie", "is3D", "use_cuda",
          "shifts_interpolate")


def _pair(value: Any) -> Any:
    """Turn an int into an (int, int) pair; leave anything else."""
    return (value, value) if _is_int(value) else value


def _coerce(value: Any) -> Any:
    """JSON lists / numpy arrays -> tuples and numpy scalars -> Python, recursively."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return tuple(_coerce(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """JSON-safe form: tuples -> lists, slices -> [start, stop, step] (full slice -> None)."""
    if isinstance(value, slice):
        return None if value == slice(None) else [value.start, value.stop, value.step]
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _fail(name: str, value: Any, why: str) -> ParameterError:
    return ParameterError(f"motion parameter {name}={value!r} is invalid: {why}")


def _full_slice(value: Any) -> bool:
    """True for ``slice(None)`` and its JSON forms (None, [None, None, None])."""
    if isinstance(value, tuple):
        return all(v is None for v in value)
    return value is None or value == slice(None)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


@dataclasses.dataclass(frozen=True)
class MotionParams:
    """NoRMCorre parameters (CaImAn's ``motion`` group).

    Attributes
    ----------
    max_shifts : tuple of int
        Largest rigid shift searched per axis (rows, columns), in pixels.
    strides, overlaps : tuple of int
        pw-rigid tiles: window ``strides + overlaps``, tile starts
        ``range(0, dim - window, stride)`` plus ``dim - window``.
    max_deviation_rigid : int
        Tile shifts stay within the frame's rigid shift +- this many pixels.
    upsample_factor_grid : int
        Only used when ``shifts_opencv=False``: the pw shift field is applied in Fourier space
        on tiles ``upsample_factor_grid`` times finer than the registration tiles.
    niter_rig : int
        Rigid template refinement passes (:func:`~caiman_dask.motion.rigid_template`).
    num_frames_split : int
        Frames per time block (the driver's unit of work).
    pw_rigid : bool
        Piecewise-rigid correction (after the rigid shift bounds the tile search).
    shifts_opencv : bool
        Apply shifts with OpenCV cubic interpolation (True) or in Fourier space (False).
    border_nan : {True, False, 'copy', 'min'}
        Pixels whose source lies outside the frame become NaN (True), 0 (False), the nearest
        edge pixel ('copy') or the frame's minimum ('min'). The default is CaImAn's
        ``CNMFParams`` 'copy' (one parameter file serves both engines, and CNMF needs
        finite pixels); ``MotionCorrect`` alone defaults to True.
    gSig_filt : tuple of int or None
        High-pass (mean-subtracted Gaussian) filter half-size for one-photon data; shifts are
        computed on filtered frames and applied to raw frames.
    nonneg_movie : bool
        Add ``-min_mov`` to the corrected movie so it is (mostly) non-negative.
    min_mov : float or None
        The movie's minimum; None means "use the template's minimum" (CaImAn's fallback).
    """

    max_shifts: tuple[int, int] = (6, 6)
    strides: tuple[int, int] = (96, 96)
    overlaps: tuple[int, int] = (32, 32)
    max_deviation_rigid: int = 3
    upsample_factor_grid: int = 4
    niter_rig: int = 1
    num_frames_split: int = 80
    pw_rigid: bool = False
    shifts_opencv: bool = True
    border_nan: bool | str = "copy"
    gSig_filt: tuple[int, int] | None = None
    nonneg_movie: bool = True
    min_mov: float | None = None
    is3D: bool = False
    indices: Any = dataclasses.field(default=(slice(None), slice(None)), hash=False)
    shifts_interpolate: bool = False
    splits_rig: int = 14
    splits_els: int = 14
    num_splits_to_process_rig: Any = None
    num_splits_to_process_els: Any = None
    use_cuda: bool = False
    UNUSED = ("shifts_interpolate", "splits_rig", "splits_els", "num_splits_to_process_rig",
              "num_splits_to_process_els", "use_cuda")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _coerce(getattr(self, f.name))
            if f.name in _PAIRS or f.name == "gSig_filt":
                value = _pair(value)
            if f.name == "indices" and isinstance(value, tuple) and len(value) == 2 \
                    and all(_full_slice(v) for v in value):
                value = (slice(None), slice(None))
            object.__setattr__(self, f.name, value)
        self._check_values()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MotionParams:
        """Build from CaImAn's ``motion`` dict (JSON lists become tuples).

        Parameters
        ----------
        values : Mapping
            CaImAn's ``params.motion`` (or a subset of it).

        Raises
        ------
        ConfigError
            For a key CaImAn's motion group does not have, with the closest known name.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                hint = did_you_mean(str(key), known)
                raise ConfigError(f"unknown motion parameter {key!r}.{hint} "
                                  f"Known: {', '.join(sorted(known))}.")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return CaImAn's ``motion`` dict, JSON-safe (lists; full ``indices`` as None)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> MotionParams:
        """Return a copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    # -- checks ----------------------------------------------------------------------------
    def _check_values(self) -> None:
        """Checks that need no frame shape (types, signs, choices)."""
        for name in _PAIRS:
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == 2
                    and all(_is_int(v) and v >= 0 for v in value)):
                raise _fail(name, value, "give two non-negative integers (rows, columns)")
        if min(self.strides) < 1:
            raise _fail("strides", self.strides, "strides must be >= 1 pixel")
        for name in _INTS:
            value = getattr(self, name)
            if not (_is_int(value) and value >= 0):
                raise _fail(name, value, "must be a non-negative integer")
        for name, lowest in (("num_frames_split", 1), ("upsample_factor_grid", 1)):
            if getattr(self, name) < lowest:
                raise _fail(name, getattr(self, name), f"must be >= {lowest}")
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "must be true or false")
        self._check_choices()

    def _check_choices(self) -> None:
        if not (isinstance(self.border_nan, bool) or self.border_nan in ("copy", "min")):
            raise _fail("border_nan", self.border_nan, "use true, false, 'copy' or 'min'")
        if self.gSig_filt is not None and not (
                isinstance(self.gSig_filt, tuple) and len(self.gSig_filt) == 2
                and all(_is_int(g) and g >= 1 for g in self.gSig_filt)):
            raise _fail("gSig_filt", self.gSig_filt,
                        "give None or positive integer half-sizes, e.g. [3, 3]")
        if self.min_mov is not None and not (
                isinstance(self.min_mov, int | float) and not isinstance(self.min_mov, bool)
                and math.isfinite(self.min_mov)):
            raise _fail("min_mov", self.min_mov, "give None or a finite number")

    def validate(self, frame_shape: tuple[int, ...]) -> MotionParams:
        """Refuse values inconsistent with frames of ``frame_shape`` = ``(Y, X)``.

        Parameters
        ----------
        frame_shape : tuple of int
            Frame size in pixels (rows, columns).

        Returns
        -------
        MotionParams
            ``self``, so calls can be chained.

        Raises
        ------
        ParameterError
            Naming the parameter and what to change: ``max_shifts`` of half the frame or
            more, ``strides + overlaps`` larger than the frame (pw-rigid only), 3-D or
            cropping options, frames too small to register.
        """
        dims = tuple(int(d) for d in frame_shape)
        if len(dims) != 2 or min(dims) < 4:
            raise ParameterError(f"frames of shape {frame_shape} cannot be motion corrected: "
                                 "give 2-D frames of at least 4x4 pixels")
        if self.is3D:
            raise _fail("is3D", self.is3D, "3-D motion correction is not implemented")
        if self.indices != (slice(None), slice(None)):
            raise _fail("indices", self.indices,
                        "cropping the field of view is not supported; crop the movie instead")
        for axis, (dim, shift) in enumerate(zip(dims, self.max_shifts, strict=True)):
            if 2 * (shift + 1) + _MIN_INNER > dim:
                raise _fail("max_shifts", self.max_shifts,
                            f"a shift of {shift} px on axis {axis} is (about) half the frame "
                            f"({dim} px) or more; use max_shifts <= "
                            f"{(dim - _MIN_INNER) // 2 - 1}")
        if self.pw_rigid:
            self._validate_tiles(dims)
        return self

    def _validate_tiles(self, dims: tuple[int, int]) -> None:
        tile_axes(dims, strides=self.strides, overlaps=self.overlaps)
        for shift, stride, overlap in zip(self.max_shifts, self.strides, self.overlaps,
                                          strict=True):
            reach = shift + self.max_deviation_rigid
            if 2 * (reach + 1) + _MIN_INNER > stride + overlap:
                raise _fail("max_deviation_rigid", self.max_deviation_rigid,
                            f"tile shifts up to max_shifts + max_deviation_rigid = {reach} px "
                            f"need tiles (strides + overlaps) of more than "
                            f"{2 * (reach + 1) + _MIN_INNER - 1} px; raise motion.strides or "
                            "motion.overlaps, or lower max_deviation_rigid / max_shifts")
