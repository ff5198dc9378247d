"""Moving pixels: a rigid shift or a pw-rigid tile field applied to one frame.

Used by :func:`~caiman_dask.motion.correct_block` and
:func:`~caiman_dask.motion.apply_block_shifts` alike, so applying a block's shifts again
reproduces its corrected frames exactly. OpenCV cubic interpolation (``shifts_opencv``)
or Fourier phase ramps; border pixels per ``border_nan``; NaN pixels of the raw frame are
NaN again at their moved position (nearest-neighbour move of their mask).
"""

from __future__ import annotations

import cv2
import numpy as np

from caiman_dask.errors import ParameterError
from caiman_dask.motion.borders import fill_mapped_border
from caiman_dask.motion.fourier import FourierTiles, fourier_shift
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.piecewise import ShiftField, field_band, remap_frame, tile_layout
from caiman_dask.motion.rigid import warp_rigid
from caiman_dask.motion.spectra import Buffers, RealFFT


class FrameMover:
    """Moves pixels: applies rigid or tile shifts to one float32 frame, borders included."""

    def __init__(self, dims: tuple[int, int], params: MotionParams, *, piecewise: bool) -> None:
        self.params, self.dims = params, dims
        self.buffers = Buffers()
        self.matrix = np.zeros((2, 3))
        self.fft = None if params.shifts_opencv else RealFFT(dims)
        self.layout = None if not piecewise else tile_layout(
            dims, strides=params.strides, overlaps=params.overlaps)
        self.field = None if self.layout is None else ShiftField(self.layout, dims)
        self.fourier = None
        if self.layout is not None and not params.shifts_opencv:
            self.fourier = FourierTiles(self.layout, dims, params)

    def move(self, source: np.ndarray, shift: np.ndarray, tiles: np.ndarray | None,
             out: np.ndarray, *, spectrum: np.ndarray | None = None,
             nan_mask: np.ndarray | None = None) -> None:
        """Shift ``source`` into ``out`` rigidly (``tiles`` None) or by the tile field."""
        if tiles is None:
            self._rigid(source, shift, out, spectrum)
            if nan_mask is not None:
                moved = cv2.warpAffine(nan_mask.view(np.uint8), self.matrix, self.dims[::-1],
                                       flags=cv2.INTER_NEAREST)
                out[moved != 0] = np.nan
            return
        if self.field is None:
            raise ParameterError("tile shifts given to a rigid correction; build it with "
                                 "pw-rigid tiles")
        maps = self.field.maps(tiles, self.buffers)
        self._piecewise(source, tiles, maps, out)
        if nan_mask is not None:
            moved = cv2.remap(nan_mask.view(np.uint8), maps[1], maps[0], cv2.INTER_NEAREST)
            out[moved != 0] = np.nan

    def _rigid(self, source: np.ndarray, shift: np.ndarray, out: np.ndarray,
               spectrum: np.ndarray | None) -> None:
        mode = self.params.border_nan
        if self.fft is None:
            warp_rigid(source, shift, out, mode=mode, matrix=self.matrix)
            return
        self.matrix[:] = ((1.0, 0.0, shift[1]), (0.0, 1.0, shift[0]))
        if spectrum is None:
            spectrum = self.fft(source[None])[0]
        fourier_shift(spectrum, shift, out, mode=mode, source=source)

    def _piecewise(self, source: np.ndarray, tiles: np.ndarray,
                   maps: tuple[np.ndarray, np.ndarray], out: np.ndarray) -> None:
        mode, band = self.params.border_nan, field_band(tiles)
        if self.fourier is None:
            remap_frame(source, maps, out, mode=mode, band=band)
            return
        self.fourier.apply(source, tiles, out)
        fill_mapped_border(out, maps[0], maps[1], mode, source, band=band)
