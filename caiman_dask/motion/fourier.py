"""Shifts applied in Fourier space (``shifts_opencv=False``): phase ramps instead of cubics.

Rigid: the whole frame is multiplied by a phase ramp; the shift is circular, so the wrapped
strips are border pixels (see :mod:`~caiman_dask.motion.borders`).

Piecewise-rigid (:class:`FourierTiles`): as in NoRMCorre, the frame is cut into tiles
``upsample_factor_grid`` times finer than the registration tiles (strides
``round(strides / upsample_factor_grid)``, same overlaps), each shifted by the shift field
at its centre with a phase ramp, and the tiles are blended with weights that ramp linearly
over the overlaps. Pixels of a tile whose source wrapped around it get (almost) no weight.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from caiman_dask.motion.borders import fill_rigid_border
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.piecewise import TileLayout, interpolation_weights, tile_layout

_WRAPPED_WEIGHT = 1e-6


def _ramps(shifts: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Separable phase ramps (..., Y, 1) and (..., 1, X//2+1) shifting by ``shifts``."""
    rows, cols = shape
    freq_y = np.fft.fftfreq(rows)
    freq_x = np.arange(cols // 2 + 1) / cols
    ramp_y = np.exp(-2j * np.pi * shifts[..., 0, None] * freq_y).astype(np.complex64)
    ramp_x = np.exp(-2j * np.pi * shifts[..., 1, None] * freq_x).astype(np.complex64)
    return ramp_y[..., :, None], ramp_x[..., None, :]


def fourier_shift(spectrum: np.ndarray, shift: np.ndarray, out: np.ndarray, *,
                  mode: bool | str, source: np.ndarray) -> None:
    """Shift an image given by its rfft2 ``spectrum`` by ``shift`` (rows, cols) into ``out``.

    The wrapped strips are then treated as border pixels (``mode`` = ``border_nan``).
    """
    ramp_y, ramp_x = _ramps(np.asarray(shift, dtype=np.float64), out.shape)
    out[...] = scipy.fft.irfft2(spectrum * ramp_y * ramp_x, s=out.shape, workers=1)
    fill_rigid_border(out, shift, mode, source)


def _blend_ramp(window: int, overlap: int) -> np.ndarray:
    """Blending weight along a tile: linear over ``overlap`` px at both ends, else 1."""
    index = np.arange(window)
    ramp = np.minimum(index + 1, window - index) / (overlap + 1.0)
    return np.minimum(ramp, 1.0).astype(np.float32)


class FourierTiles:
    """Applies a piecewise-rigid shift field in Fourier space on fine overlapping tiles."""

    def __init__(self, coarse: TileLayout, dims: tuple[int, int], params: MotionParams) -> None:
        factor = params.upsample_factor_grid
        strides = (max(1, round(params.strides[0] / factor)),
                   max(1, round(params.strides[1] / factor)))
        self.layout = tile_layout(dims, strides=strides, overlaps=params.overlaps)
        coarse_y, coarse_x = coarse.centres
        fine_y, fine_x = self.layout.centres
        self.weights_y = interpolation_weights(coarse_y, fine_y)
        self.weights_xt = interpolation_weights(coarse_x, fine_x).T.copy()
        wy, wx = self.layout.window
        self.blend_y = _blend_ramp(wy, params.overlaps[0])
        self.blend_x = _blend_ramp(wx, params.overlaps[1])

    def fine_shifts(self, tile_shifts: np.ndarray) -> np.ndarray:
        """Shift field at the fine tile centres, (n_fine, 2)."""
        planes = [self.weights_y @ tile_shifts[..., a].astype(np.float32) @ self.weights_xt
                  for a in (0, 1)]
        return np.stack(planes, axis=-1).reshape(-1, 2)

    def apply(self, source: np.ndarray, tile_shifts: np.ndarray, out: np.ndarray) -> None:
        """Shift ``source`` by the field of (ty, tx, 2) ``tile_shifts`` into ``out``.

        Border pixels are left to the caller (they hold blended wrapped values).
        """
        shifts = self.fine_shifts(tile_shifts).astype(np.float64)
        tiles = np.stack(self.layout.views(source))
        ramp_y, ramp_x = _ramps(shifts, self.layout.window)
        spectra = scipy.fft.rfft2(tiles, workers=1)
        spectra *= ramp_y
        spectra *= ramp_x
        moved = scipy.fft.irfft2(spectra, s=self.layout.window, workers=1)
        weights = self._weights(shifts)
        self._blend(moved * weights, weights, out)

    def _weights(self, shifts: np.ndarray) -> np.ndarray:
        """Blend weights per tile, ~0 where the tile's source wrapped around (n, wy, wx)."""
        wy, wx = self.layout.window
        rows = np.arange(wy)[None, :] - shifts[:, 0, None]
        cols = np.arange(wx)[None, :] - shifts[:, 1, None]
        inside_y = ((rows >= 0) & (rows <= wy - 1)) + _WRAPPED_WEIGHT
        inside_x = ((cols >= 0) & (cols <= wx - 1)) + _WRAPPED_WEIGHT
        weight_y = (inside_y * self.blend_y).astype(np.float32)
        weight_x = (inside_x * self.blend_x).astype(np.float32)
        return weight_y[:, :, None] * weight_x[:, None, :]

    def _blend(self, weighted: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
        total = np.zeros(out.shape, np.float32)
        out[...] = 0
        wy, wx = self.layout.window
        index = 0
        for y in self.layout.starts_y:
            for x in self.layout.starts_x:
                out[y:y + wy, x:x + wx] += weighted[index]
                total[y:y + wy, x:x + wx] += weights[index]
                index += 1
        out /= total
