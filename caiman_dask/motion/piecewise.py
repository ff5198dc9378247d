"""Piecewise-rigid registration: NoRMCorre tiles, smooth shift fields, remapping.

Each tile (``geometry.tile_axes``) of a frame is registered against the same tile of the
template, its integer displacement searched within the frame's rigid displacement
+- ``max_deviation_rigid`` (CaImAn's ``ceil(r - d) .. floor(r + d)``), then refined to
1/10 px. Tiles without texture take the rigid shift.

The tile shifts, known at tile centres ``start + (window - 1) / 2``, are interpolated to
every pixel with a natural cubic spline per axis (separable; constant beyond the outer
centres): a smooth field evaluated at the tiles' true positions (what CaImAn's
``shifts_interpolate=True`` does; its default ``cv2.resize`` maps the tile grid onto the
frame corners instead). The field is applied with ``cv2.remap`` (cubic), or in Fourier
space on tiles ``upsample_factor_grid`` times finer than the registration tiles
(``shifts_opencv=False``; see :class:`FourierTiles`).
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from scipy.interpolate import CubicSpline

from caiman_dask.geometry import tile_axes
from caiman_dask.motion.borders import fill_mapped_border
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.registration import (
    UPSAMPLE_FFT,
    Reference,
    locate_peaks,
    prepare_reference,
)
from caiman_dask.motion.spectra import Buffers, RealFFT, search_tables


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """Tile starts per axis and the common tile window (rows, columns)."""

    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    window: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        """Number of tiles per axis ``(ty, tx)``."""
        return (len(self.starts_y), len(self.starts_x))

    @property
    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Tile centres per axis, in pixels."""
        return (np.asarray(self.starts_y) + (self.window[0] - 1) / 2,
                np.asarray(self.starts_x) + (self.window[1] - 1) / 2)

    def views(self, image: np.ndarray) -> list[np.ndarray]:
        """The tiles of ``image`` as views, row-major."""
        wy, wx = self.window
        return [image[y:y + wy, x:x + wx] for y in self.starts_y for x in self.starts_x]


def tile_layout(dims: tuple[int, ...], *, strides: tuple[int, int],
                overlaps: tuple[int, int]) -> TileLayout:
    """Return the NoRMCorre :class:`TileLayout` of a frame (``geometry.tile_axes``)."""
    ys, xs = tile_axes(dims, strides=strides, overlaps=overlaps)
    return TileLayout(tuple(s.start for s in ys), tuple(s.start for s in xs),
                      (strides[0] + overlaps[0], strides[1] + overlaps[1]))


def interpolation_weights(centres: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Weights (len(coords), len(centres)) of a natural cubic spline through ``centres``.

    ``weights @ values`` interpolates values given at ``centres``; coordinates beyond the
    outer centres take the outer value (no extrapolation). One centre gives a constant.
    """
    if len(centres) == 1:
        return np.ones((len(coords), 1), np.float32)
    spline = CubicSpline(centres, np.eye(len(centres)), bc_type="natural")
    return spline(np.clip(coords, centres[0], centres[-1])).astype(np.float32)


class ShiftField:
    """Per-pixel source coordinates ``pixel - shift(pixel)`` from tile shifts."""

    def __init__(self, layout: TileLayout, dims: tuple[int, int]) -> None:
        centres_y, centres_x = layout.centres
        self.dims = dims
        self.weights_y = interpolation_weights(centres_y, np.arange(dims[0]))
        self.weights_xt = np.ascontiguousarray(
            interpolation_weights(centres_x, np.arange(dims[1])).T)
        self._rows = np.arange(dims[0], dtype=np.float32)[:, None]
        self._cols = np.arange(dims[1], dtype=np.float32)[None, :]

    def maps(self, tile_shifts: np.ndarray, buffers: Buffers) -> tuple[np.ndarray, np.ndarray]:
        """Source maps ``(map_y, map_x)`` (float32, buffers) for (ty, tx, 2) tile shifts."""
        maps = []
        for axis, grid in ((0, self._rows), (1, self._cols)):
            out = buffers.get(f"map{axis}", self.dims)
            low = self.weights_y @ tile_shifts[..., axis].astype(np.float32)
            np.matmul(low, self.weights_xt, out=out)
            np.subtract(grid, out, out=out)
            maps.append(out)
        return maps[0], maps[1]


def field_band(tile_shifts: np.ndarray) -> int:
    """Edge band (px) that can hold pixels without source (the spline may overshoot)."""
    return int(math.ceil(1.5 * float(np.abs(tile_shifts).max(initial=0.0)))) + 2


class TileRegistrar:
    """Registers the tiles of frames against the tiles of one template."""

    def __init__(self, template: np.ndarray, params: MotionParams) -> None:
        self.layout = tile_layout(template.shape, strides=params.strides,
                                  overlaps=params.overlaps)
        self.deviation = params.max_deviation_rigid
        tiles = np.stack(self.layout.views(template))
        reach = (params.max_shifts[0] + self.deviation, params.max_shifts[1] + self.deviation)
        tables = search_tables(self.layout.window, reach=max(reach), upsample=UPSAMPLE_FFT)
        self.reference: Reference = prepare_reference(tiles, tables, reach=reach)
        self.fft = RealFFT(self.layout.window, batch=len(tiles))
        self.buffers = Buffers()

    def register(self, image: np.ndarray, rigid: np.ndarray, *,
                 mean_level: float | None = None) -> np.ndarray:
        """Tile shifts (to apply) of one registration image, (ty, tx, 2) float32.

        Parameters
        ----------
        image : ndarray
            The frame as registered (filtered and NaN-free), float32 (Y, X).
        rigid : ndarray
            The frame's rigid shift (to apply); tiles stay within +- max_deviation_rigid.
        mean_level : float, optional
            Mean raw pixel value, for the flatness test when ``image`` is high-pass
            filtered (its own DC is then ~0); default: each tile's own DC.
        """
        grid = self.layout.grid
        centre = -np.asarray(rigid, dtype=np.float64)
        if self.deviation == 0:
            return np.broadcast_to(0.0 - centre, (*grid, 2)).astype(np.float32)
        spectra = self.fft(self.layout.views(image))
        if mean_level is None:
            dc = np.abs(spectra[:, 0, 0]).astype(np.float64)
        else:
            dc = np.full(len(spectra), abs(mean_level) * math.prod(self.layout.window))
        lows, highs = np.ceil(centre - self.deviation), np.floor(centre + self.deviation)
        low, high = (int(lows[0]), int(lows[1])), (int(highs[0]), int(highs[1]))
        peaks = locate_peaks(spectra, self.reference, low=low, high=high, dc=dc,
                             buffers=self.buffers)
        found = peaks.displacement
        found[peaks.flat | ~peaks.finite] = centre
        found = np.clip(found, centre - self.deviation, centre + self.deviation)
        return (0.0 - found).astype(np.float32).reshape(*grid, 2)


def remap_frame(source: np.ndarray, maps: tuple[np.ndarray, np.ndarray], out: np.ndarray,
                *, mode: bool | str, band: int) -> None:
    """Apply source maps to ``source`` with cubic ``cv2.remap`` into ``out``; fill borders."""
    map_y, map_x = maps
    cv2.remap(source, map_x, map_y, cv2.INTER_CUBIC, dst=out,
              borderMode=cv2.BORDER_REPLICATE)
    fill_mapped_border(out, map_y, map_x, mode, source, band=band, replicated=True)
