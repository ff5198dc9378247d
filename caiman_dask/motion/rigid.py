"""Rigid registration of frames against one template, and rigid shifts of frames.

:class:`RigidRegistrar` prepares the template once per block (NaN filled, high-passed when
``gSig_filt`` is set, its FFT) and registers frames one by one with
:func:`~caiman_dask.motion.registration.locate_peaks`.

Frames without texture (constant, or zero after the high-pass filter) get shift 0 and
:data:`FLAG_FLAT`. Non-finite pixels (NaN, inf) are ignored for registration -- they are
replaced by the mean of the frame's finite pixels -- the frame gets :data:`FLAG_NONFINITE`,
and they are NaN again, at their moved position, in the corrected frame. With
``gSig_filt`` the shifts are computed on high-passed frames (CaImAn's kernel) and applied to
the raw frames.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from caiman_dask.motion.borders import fill_rigid_border
from caiman_dask.motion.images import fill_nonfinite
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.registration import UPSAMPLE_FFT, Peaks, locate_peaks, prepare_reference
from caiman_dask.motion.spectra import Buffers, RealFFT, search_tables

FLAG_FLAT = 1
FLAG_NONFINITE = 2
FLAG_AT_BOUND = 4
"""Per-frame flags (bit mask): no texture (shift set to 0) / NaN or inf pixels / the shift
hit the search bound (``max_shifts``, or rigid +- ``max_deviation_rigid`` for a tile)."""


def highpass_kernel(gsig: tuple[int, int]) -> np.ndarray:
    """CaImAn's registration high-pass: a Gaussian minus its mean over a central disc.

    The kernel is a ``(3g//2*2+1)``-wide Gaussian of sigma ``g`` per axis; entries at least
    as large as the middle of its first column form the support, the support's mean is
    subtracted there and everything else is 0, so the filter removes smooth background.
    """
    sizes = [(3 * g) // 2 * 2 + 1 for g in gsig]
    k_y = cv2.getGaussianKernel(sizes[0], gsig[0]).astype(np.float64)
    k_x = cv2.getGaussianKernel(sizes[1], gsig[1]).astype(np.float64)
    kernel = k_y @ k_x.T
    support = kernel >= kernel[:, 0].max()
    kernel[support] -= kernel[support].mean()
    kernel[~support] = 0
    return kernel.astype(np.float32)


def highpass(image: np.ndarray, kernel: np.ndarray, *, out: np.ndarray | None = None
             ) -> np.ndarray:
    """Filter a float32 image with :func:`highpass_kernel` (reflected borders)."""
    return cv2.filter2D(image, -1, kernel, dst=out, borderType=cv2.BORDER_REFLECT)


def clean_nonfinite(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``image`` into ``out`` with NaN/inf replaced by the mean of its finite pixels.

    Returns
    -------
    ndarray
        The boolean mask of the replaced pixels.
    """
    bad = ~np.isfinite(image)
    good = image[~bad]
    np.copyto(out, image)
    out[bad] = good.mean(dtype=np.float64) if good.size else 0.0
    return bad


def warp_rigid(source: np.ndarray, shift: np.ndarray, out: np.ndarray, *,
               mode: bool | str, matrix: np.ndarray) -> None:
    """Shift ``source`` by ``shift`` (rows, cols) into ``out`` with a cubic ``warpAffine``.

    ``matrix`` is a reusable (2, 3) float64 scratch array. Border pixels follow ``mode``.
    """
    matrix[:] = ((1.0, 0.0, shift[1]), (0.0, 1.0, shift[0]))
    cv2.warpAffine(source, matrix, (source.shape[1], source.shape[0]), dst=out,
                   flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    fill_rigid_border(out, shift, mode, source)


@dataclasses.dataclass(frozen=True)
class Registered:
    """One frame after rigid registration (arrays may be views of reusable buffers)."""

    shift: np.ndarray  # (2,) float64, the shift to apply
    flags: int
    image: np.ndarray  # what was registered: NaN-free, high-passed when gSig_filt is set
    source: np.ndarray  # the raw frame to shift (NaN-free copy when nan_mask is set)
    nan_mask: np.ndarray | None  # pixels that were NaN/inf in the frame
    spectrum: np.ndarray | None  # rfft2 of ``source`` when it was computed
    mean_level: float | None  # mean raw value when ``image`` is high-passed


class RigidRegistrar:
    """Registers frames against one template, whose FFT is computed once.

    Parameters
    ----------
    template : ndarray
        (Y, X) template in raw intensities; non-finite pixels are replaced by its mean and,
        with ``gSig_filt``, it is high-pass filtered like the frames.
    params : MotionParams
        Uses ``max_shifts`` and ``gSig_filt``.
    """

    def __init__(self, template: np.ndarray, params: MotionParams) -> None:
        gsig = params.gSig_filt
        self.kernel = None if gsig is None else highpass_kernel(gsig)
        self.image = self.prepare(template)
        shifts = params.max_shifts
        tables = search_tables(template.shape, reach=max(shifts), upsample=UPSAMPLE_FFT)
        self.reference = prepare_reference(self.image[None], tables, reach=shifts)
        self.low, self.high = (-shifts[0], -shifts[1]), (shifts[0], shifts[1])
        self.fft = RealFFT(template.shape)
        self.buffers = Buffers()

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Return ``image`` as registered: float32, NaN-free, high-passed if configured."""
        out = fill_nonfinite(image)
        return out if self.kernel is None else highpass(out, self.kernel)

    def register(self, frame: np.ndarray) -> Registered:
        """Register one float32 (Y, X) frame (it may hold NaN; it is not modified)."""
        source, mask = frame, None
        image, spectra, peaks, level = self._search(frame)
        if not peaks.finite[0]:  # NaN/inf somewhere: register the cleaned frame instead
            source = self.buffers.get("clean", frame.shape)
            mask = clean_nonfinite(frame, source)
            image, spectra, peaks, level = self._search(source)
        flags = 0 if mask is None else FLAG_NONFINITE
        shift = np.zeros(2)
        if peaks.flat[0] or not peaks.finite[0]:
            flags |= FLAG_FLAT
        else:
            shift = 0.0 - peaks.displacement[0]
            flags |= FLAG_AT_BOUND if peaks.at_bound[0] else 0
        spectrum = spectra[0] if self.kernel is None else None
        return Registered(shift, flags, image, source, mask, spectrum, level)

    def _search(self, source: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, Peaks, float | None]:
        image = source
        if self.kernel is not None:
            image = highpass(source, self.kernel, out=self.buffers.get("filtered", source.shape))
        spectra = self.fft(image[None])
        level = None if self.kernel is None else float(source.mean(dtype=np.float64))
        dc = (np.abs(spectra[:, 0, 0]).astype(np.float64) if level is None
              else np.array([abs(level) * source.size]))
        peaks = locate_peaks(spectra, self.reference, low=self.low, high=self.high, dc=dc,
                             buffers=self.buffers)
        return image, spectra, peaks, level
