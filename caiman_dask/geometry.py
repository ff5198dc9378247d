"""CaImAn's grids: CNMF patches, NoRMCorre tiles and motion-correction time blocks.

Pure integer geometry (no dask). Every function reproduces the grid CaImAn 1.12
builds, so a patch index here is the same patch in CaImAn:

- CNMF patches (``extract_patch_coordinates``): per axis the usable extent is
  ``D = dim - 2*border_pix``; centres are ``range(rf, D - rf, 2*rf - stride)``
  plus a last one at ``D - rf``; a patch spans ``centre - rf .. centre + rf``
  inclusive, clipped to ``[0, D)``, then offset by ``border_pix``. The step
  between patches is ``2*rf - stride``; ``stride`` is the overlap minus one.
  Regular patches are ``2*rf + 1`` wide; the last one is ``2*rf`` wide because
  its right edge ``D`` is clipped away (512 px, rf=25, stride=6: starts
  0, 44, ..., 440, 462; widths 51, the last 50).
- Degenerate extents, exactly as CaImAn's formula gives them:
  ``D <= 2*rf``: the regular range is empty and the last centre ``D - rf`` gives
  one patch spanning the whole usable extent (width ``D``).
  ``D == 2*rf + 1``: two patches, ``[0, D)`` and ``[1, D)`` (near duplicates).
- NoRMCorre tiles: window ``strides + overlaps``; starts
  ``range(0, dim - window, stride)`` plus ``dim - window``.
- Time blocks: ``max(T // num_frames_split, 1)`` contiguous blocks with
  ``np.array_split`` lengths (the first ``T % n`` blocks one frame longer).
  :func:`plan_time_blocks` gives the same number of blocks with boundaries on
  multiples of one block length, which shard grids can follow.

Patches and tiles are listed row-major (y outer, x inner), as CaImAn does.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from caiman_dask.errors import ParameterError

Pair = tuple[int, int]
Interval = tuple[int, int]


@dataclass(frozen=True)
class _Region2D:
    """A rectangle of the frame: half-open ``y`` and ``x`` slices with step 1."""

    index: int
    y: slice
    x: slice

    @property
    def shape(self) -> Pair:
        """``(height, width)`` in pixels."""
        return (self.y.stop - self.y.start, self.x.stop - self.x.start)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(y, x)``, ready to index a frame or ``movie[:, y, x]``."""
        return (self.y, self.x)


@dataclass(frozen=True)
class Patch(_Region2D):
    """One CNMF patch: ``index`` in CaImAn's order and its ``y``/``x`` slices."""


@dataclass(frozen=True)
class Tile(_Region2D):
    """One NoRMCorre tile: ``index`` (row-major) and its ``y``/``x`` slices."""


def as_pair(value: int | Sequence[int], name: str, *, minimum: int = 0) -> Pair:
    """Return ``value`` as a ``(y, x)`` pair of ints, each ``>= minimum``.

    Parameters
    ----------
    value : int or pair of int
        One value for both axes, or ``(y, x)``.
    name : str
        The parameter's name, for the error message (``"patch.rf"``).
    minimum : int, optional
        Smallest allowed value.

    Raises
    ------
    ParameterError
        If ``value`` is not an int or a pair of ints, or is below ``minimum``.
    """
    items = [value, value] if _is_int(value) else list(_as_sequence(value, name))
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise ParameterError(f"{name} must be an int or a pair of ints (y, x), got {value!r}")
    pair = (int(items[0]), int(items[1]))
    if min(pair) < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value!r}: use values >= {minimum}")
    return pair


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_sequence(value: object, name: str) -> Sequence[object]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ParameterError(f"{name} must be an int or a pair of ints (y, x), got {value!r}")
    return value


def _frame_dims(dims: Sequence[int]) -> Pair:
    items = list(dims) if isinstance(dims, Sequence) else []
    if len(items) != 2 or not all(_is_int(d) and d >= 1 for d in items):
        raise ParameterError(f"frame dims must be two ints (Y, X) >= 1, got {dims!r}")
    return (int(items[0]), int(items[1]))


def resolve_stride(rf: int | Sequence[int], stride: int | Sequence[int] | None = None) -> Pair:
    """Return the patch overlap per axis; ``None`` means CaImAn's ``int(0.2 * rf)``.

    Raises
    ------
    ParameterError
        If ``rf < 1``, ``stride < 0`` or ``stride >= 2*rf`` (the step
        ``2*rf - stride`` between patches must be at least 1).
    """
    rfs = as_pair(rf, "patch.rf", minimum=1)
    if stride is None:
        return (int(0.2 * rfs[0]), int(0.2 * rfs[1]))
    strides = as_pair(stride, "patch.stride", minimum=0)
    for r, s in zip(rfs, strides, strict=True):
        if s >= 2 * r:
            raise ParameterError(
                f"patch.stride={stride!r} must be < 2*rf={2 * r} (the step between patches, "
                f"2*rf - stride, must be >= 1): use a stride below {2 * r}, e.g. CaImAn's "
                f"default int(0.2*rf)={int(0.2 * r)}"
            )
    return strides


def _usable_extents(dims: Pair, border_pix: int) -> Pair:
    if not _is_int(border_pix) or border_pix < 0:
        raise ParameterError(f"patch.border_pix must be an int >= 0, got {border_pix!r}")
    extents = (dims[0] - 2 * border_pix, dims[1] - 2 * border_pix)
    if min(extents) < 1:
        limit = (min(dims) - 1) // 2
        raise ParameterError(
            f"patch.border_pix={border_pix} leaves no pixels in a {dims[0]}x{dims[1]} frame "
            f"(2*border_pix must be < {min(dims)}): use border_pix <= {limit}"
        )
    return extents


def patch_intervals(extent: int, rf: int, stride: int) -> tuple[Interval, ...]:
    """Return CaImAn's patch ``(start, stop)`` intervals on one axis of usable ``extent``.

    Parameters must already be valid (see :func:`resolve_stride`); coordinates
    are relative to the usable extent (add ``border_pix`` for frame coordinates).
    """
    centres = list(range(rf, extent - rf, 2 * rf - stride)) + [extent - rf]
    return tuple((max(c - rf, 0), min(c + rf + 1, extent)) for c in centres)


def patch_axes(
    dims: Sequence[int],
    *,
    rf: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    border_pix: int = 0,
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Return the CNMF patch slices on each axis, ``(y_slices, x_slices)``.

    The patch grid is their product (see :func:`patch_grid`); this per-axis form
    gives the patch count and starts per axis.

    Parameters
    ----------
    dims : (int, int)
        Frame shape ``(Y, X)``.
    rf : int or (int, int)
        Half-size of a patch (CaImAn's ``patch.rf``).
    stride : int or (int, int), optional
        Overlap between patches (CaImAn's ``patch.stride``); ``None`` means
        ``int(0.2 * rf)``.
    border_pix : int, optional
        Pixels ignored at every frame edge (CaImAn's ``patch.border_pix``).

    Raises
    ------
    ParameterError
        For ``rf < 1``, ``stride < 0``, ``stride >= 2*rf`` or a ``border_pix``
        that leaves no pixels.
    """
    frame = _frame_dims(dims)
    rfs = as_pair(rf, "patch.rf", minimum=1)
    strides = resolve_stride(rfs, stride)
    extents = _usable_extents(frame, border_pix)
    return tuple(  # type: ignore[return-value]
        tuple(
            slice(a + border_pix, b + border_pix)
            for a, b in patch_intervals(extents[axis], rfs[axis], strides[axis])
        )
        for axis in (0, 1)
    )


def patch_grid(
    dims: Sequence[int],
    *,
    rf: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    border_pix: int = 0,
) -> list[Patch]:
    """Return CaImAn's CNMF patches of a ``(Y, X)`` frame, in CaImAn's order.

    Parameters are those of :func:`patch_axes`.

    Examples
    --------
    >>> grid = patch_grid((512, 512), rf=25, stride=6)
    >>> len(grid), grid[1].x, grid[-1].shape
    (144, slice(44, 95, None), (50, 50))
    """
    ys, xs = patch_axes(dims, rf=rf, stride=stride, border_pix=border_pix)
    return [Patch(i, y, x) for i, (y, x) in enumerate(itertools.product(ys, xs))]


def tile_axes(
    dims: Sequence[int], *, strides: int | Sequence[int], overlaps: int | Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Return NoRMCorre's tile slices on each axis, ``(y_slices, x_slices)``.

    Raises
    ------
    ParameterError
        For ``strides < 1``, ``overlaps < 0`` or ``strides + overlaps`` larger
        than the frame.
    """
    frame = _frame_dims(dims)
    step = as_pair(strides, "motion.strides", minimum=1)
    over = as_pair(overlaps, "motion.overlaps", minimum=0)
    axes = []
    for dim, s, o in zip(frame, step, over, strict=True):
        window = s + o
        if window > dim:
            raise ParameterError(
                f"motion.strides + motion.overlaps = {s} + {o} = {window} exceeds the frame "
                f"side {dim}: choose strides and overlaps whose sum is <= {dim}"
            )
        starts = list(range(0, dim - window, s)) + [dim - window]
        axes.append(tuple(slice(a, a + window) for a in starts))
    return (axes[0], axes[1])


def tile_grid(
    dims: Sequence[int], *, strides: int | Sequence[int], overlaps: int | Sequence[int]
) -> list[Tile]:
    """Return NoRMCorre's piecewise-rigid tiles of a ``(Y, X)`` frame, row-major.

    Parameters
    ----------
    dims : (int, int)
        Frame shape ``(Y, X)``.
    strides, overlaps : int or (int, int)
        CaImAn's ``motion.strides`` and ``motion.overlaps``; a tile is
        ``strides + overlaps`` pixels wide.
    """
    ys, xs = tile_axes(dims, strides=strides, overlaps=overlaps)
    return [Tile(i, y, x) for i, (y, x) in enumerate(itertools.product(ys, xs))]


def time_blocks(n_frames: int, *, num_frames_split: int) -> list[slice]:
    """Return CaImAn's motion-correction time blocks as contiguous slices.

    ``max(n_frames // num_frames_split, 1)`` blocks with ``np.array_split``
    lengths: the first ``n_frames % n_blocks`` blocks are one frame longer.

    Raises
    ------
    ParameterError
        If ``n_frames < 1`` or ``num_frames_split < 1``.
    """
    if not _is_int(num_frames_split) or num_frames_split < 1:
        raise ParameterError(
            f"motion.num_frames_split must be an int >= 1, got {num_frames_split!r}"
        )
    if not _is_int(n_frames) or n_frames < 1:
        raise ParameterError(f"the movie must have >= 1 frame, got n_frames={n_frames!r}")
    n_blocks = max(n_frames // num_frames_split, 1)
    base, extra = divmod(n_frames, n_blocks)
    bounds = [0, *itertools.accumulate(base + (i < extra) for i in range(n_blocks))]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def plan_time_blocks(
    n_frames: int, *, num_frames_split: int, multiple_of: int = 1
) -> tuple[tuple[int, int], ...]:
    """Return MC time blocks whose boundaries fall on multiples of one block length.

    ``max(T // L, 1)`` blocks (CaImAn's count when ``multiple_of == 1``) of
    ``L = min(num_frames_split rounded down to a multiple of multiple_of, T)``
    frames; the last block also takes the remainder (``L .. 2L - 1`` frames).

    Parameters
    ----------
    n_frames : int
        Frames in the movie.
    num_frames_split : int
        Target frames per block (CaImAn's ``motion.num_frames_split``).
    multiple_of : int, optional
        Block boundaries must be multiples of this (a destination's time chunk
        or shard extent); the block length is rounded down to it (at least one).

    Raises
    ------
    ParameterError
        For ``n_frames < 1``, ``num_frames_split < 1`` or ``multiple_of < 1``.
    """
    for name, value in (("motion.num_frames_split", num_frames_split),
                        ("multiple_of", multiple_of), ("n_frames", n_frames)):
        if not _is_int(value) or value < 1:
            raise ParameterError(f"{name} must be an int >= 1, got {value!r}")
    length = min(max(multiple_of, num_frames_split // multiple_of * multiple_of), n_frames)
    n_blocks = max(n_frames // length, 1)
    starts = [k * length for k in range(n_blocks)]
    return tuple(zip(starts, starts[1:] + [n_frames], strict=True))
