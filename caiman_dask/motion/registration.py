"""Rigid registration: FFT cross-correlation with sub-pixel refinement, and rigid shifts.

Sign convention (CaImAn's): a returned shift is the shift to APPLY to the frame to align
it with the template, ``corrected(y, x) = frame(y - dy, x - dx)``. A frame whose content sits
2 px lower than in the template (``frame(y) = template(y - 2)``) gets ``dy = -2``.
Shifts are ``(rows, columns)``.

The integer peak of the cross-correlation of frame and template is searched within
``|displacement| <= max_shifts`` and refined to ``1 / UPSAMPLE_FFT`` px by an upsampled
matrix-multiply DFT around it (Guizar-Sicairos, Thurman & Fienup 2008, "Efficient subpixel
image registration algorithms", Opt. Lett. 33:156). Unlike CaImAn's plain circular
correlation -- whose frame edges pull every estimate towards 0, by ~3% of the shift on
sparse images -- the template is cut to its inner window (``max_shifts + 1`` px from the
edges, mean removed), so no frame content wraps around, and the offset that window gives an
exact translate (the template's peak against itself, measured once) is subtracted. On
synthetic data the error is then the 1/10 px quantisation alone (RMS ~0.03 px), for the
whole frame and for pw-rigid tiles alike. A constant offset between frame and template does
not matter (the template's mean is removed).

"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.fft

from caiman_dask.motion.spectra import Buffers, RealFFT, SearchTables

UPSAMPLE_FFT = 10
"""Sub-pixel resolution of registration: shifts are found to 1/10 px (as in CaImAn)."""
MATRIX_SEARCH_MAX = 57
"""Integer search windows up to this many rows (max_shifts <= 28) use matrix DFTs; larger
ones one inverse FFT (measured break-even on 512x512 frames, one thread)."""
FLAT_TOLERANCE = 1e-6
"""A frame is flat when its correlation peak is below this fraction of |frame sum| *
|template spectrum| (texture below ~1e-6 of its mean level: float32 rounding noise)."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """A batch of template images prepared for registration (their FFT, computed once)."""

    conj_spectrum: np.ndarray  # (B, Y, X//2+1) complex64: windowed template, conjugated
    norms: np.ndarray  # (B,) L2 norm of the windowed template's full spectrum
    tables: SearchTables


def prepare_reference(images: np.ndarray, tables: SearchTables, *,
                      reach: tuple[int, int]) -> Reference:
    """Return the :class:`Reference` of finite float32 ``images`` (B, Y, X).

    ``reach`` is the largest displacement searched per axis. Two measures make the estimate
    unbiased (see the module docstring):

    - each template keeps only its inner window, ``reach + 1`` px from the edges,
      minus the window's mean, and is zero elsewhere, so for displacements within the
      reach the circular correlation never wraps the frame around;
    - the window still moves the correlation peak of an exact translate of the template by
      the peak offset of the template against itself; that offset is measured here (to
      ~1/100 px) and the windowed template is moved by it (a phase ramp on its spectrum),
      so peaks fall on the true displacement and an unmoved frame gets exactly 0.
    """
    rows, cols = images.shape[1:]
    inside = (slice(None), slice(reach[0] + 1, rows - reach[0] - 1),
              slice(reach[1] + 1, cols - reach[1] - 1))
    windowed = np.zeros_like(images)
    windowed[inside] = images[inside] - images[inside].mean(axis=(1, 2), keepdims=True)
    fft = RealFFT((rows, cols), batch=len(images))
    conj = np.conj(fft(windowed))
    # Parseval: the L2 norm of the full spectrum is sqrt(N) times the image's
    norms = np.sqrt(rows * cols * np.square(windowed, dtype=np.float64).sum(axis=(1, 2)))
    offset = _self_offset(fft(images), conj, norms, tables)
    ramp_y = np.exp(2j * np.pi * np.fft.fftfreq(rows)[None, :] * offset[:, :1])
    ramp_x = np.exp(2j * np.pi * (np.arange(cols // 2 + 1) / cols)[None, :] * offset[:, 1:])
    conj *= ramp_y.astype(np.complex64)[:, :, None]
    conj *= ramp_x.astype(np.complex64)[:, None, :]
    return Reference(conj, norms, tables)


def _self_offset(raw: np.ndarray, conj: np.ndarray, norms: np.ndarray,
                 tables: SearchTables) -> np.ndarray:
    """Peak offsets (B, 2) of templates (spectra ``raw``) against their windowed selves.

    The fine-grid peak is refined by a parabola through its neighbours (to ~1/100 px).
    """
    probe = Reference(conj, norms, tables)
    centre, fine, peak = _search(raw, probe, (-1, -1), (1, 1), Buffers())
    size = len(tables.offsets)
    best = np.clip(np.stack(np.divmod(fine.reshape(len(raw), -1).argmax(axis=1), size), 1),
                   1, size - 2)
    index = np.arange(len(raw))
    offset = np.empty((len(raw), 2))
    for axis in (0, 1):
        step = np.eye(2, dtype=int)[axis]
        around = [fine[index, best[:, 0] + k * step[0], best[:, 1] + k * step[1]]
                  for k in (-1, 0, 1)]
        curve = around[0] - 2 * around[1] + around[2]
        with np.errstate(invalid="ignore", divide="ignore"):
            vertex = np.where(curve < 0, 0.5 * (around[0] - around[2]) / curve, 0.0)
        spacing = tables.offsets[1] - tables.offsets[0]
        offset[:, axis] = centre[:, axis] + tables.offsets[best[:, axis]] + vertex * spacing
    usable = np.isfinite(peak) & (peak > 0) & np.isfinite(offset).all(axis=1)
    return np.where(usable[:, None], offset, 0.0)


@dataclasses.dataclass(frozen=True)
class Peaks:
    """Correlation peaks of a batch: displacement ``d`` (content moved by d; apply -d)."""

    displacement: np.ndarray  # (B, 2) float64
    finite: np.ndarray  # (B,) bool: False when the image held NaN/inf
    flat: np.ndarray  # (B,) bool
    at_bound: np.ndarray  # (B,) bool


def _search(spectra: np.ndarray, reference: Reference, low: tuple[int, int],
            high: tuple[int, int], buffers: Buffers
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer peak ``centre`` (B, 2), fine surface (B, m, m) around it, max |coarse| (B,)."""
    count = len(spectra)
    product = buffers.get("product", spectra.shape, np.complex64)
    np.multiply(spectra, reference.conj_spectrum, out=product)
    tables = reference.tables
    coarse = _coarse(product, tables, low, high)
    width = coarse.shape[2]
    coarse = coarse.reshape(count, -1)
    peak = np.abs(coarse).max(axis=1)
    centre = np.stack(np.divmod(coarse.argmax(axis=1), width), axis=1) + np.asarray(low)
    centre[~np.isfinite(peak)] = 0
    return centre, _fine(product, tables, centre, buffers), peak


def _coarse(product: np.ndarray, tables: SearchTables, low: tuple[int, int],
            high: tuple[int, int]) -> np.ndarray:
    """Correlation (B, nu, nv) at the integer displacements ``low..high``.

    Matrix-multiply DFTs for small windows; one inverse FFT when the window has more than
    :data:`MATRIX_SEARCH_MAX` rows (large ``max_shifts``), where that is cheaper.
    """
    reach = tables.reach
    if high[0] - low[0] + 1 <= MATRIX_SEARCH_MAX:
        rows = tables.coarse_rows[low[0] + reach:high[0] + reach + 1]
        cols = tables.coarse_cols[low[1] + reach:high[1] + reach + 1].T
        return np.matmul(np.matmul(rows, product), cols).real
    shape = tables.shape
    full = scipy.fft.irfft2(product, s=shape, workers=1)
    full *= shape[0] * shape[1]  # the matrix DFTs' scale
    index_y = np.arange(low[0], high[0] + 1) % shape[0]
    index_x = np.arange(low[1], high[1] + 1) % shape[1]
    return full[:, index_y[:, None], index_x[None, :]]


def locate_peaks(spectra: np.ndarray, reference: Reference, *, low: tuple[int, int],
                 high: tuple[int, int], dc: np.ndarray, buffers: Buffers) -> Peaks:
    """Find the cross-correlation peak of each image in a window of displacements.

    Parameters
    ----------
    spectra : ndarray
        (B, Y, X//2+1) rfft2 spectra of the images (not modified).
    reference : Reference
        Their templates (B of them).
    low, high : tuple of int
        Inclusive window of integer displacements searched, per axis.
    dc : ndarray
        (B,) magnitude of each raw image's pixel sum: the scale of the flatness test.
    buffers : Buffers
        Scratch space reused across calls.

    Returns
    -------
    Peaks
        Sub-pixel displacements clipped to the window.
    """
    centre, fine, peak = _search(spectra, reference, low, high, buffers)
    offsets = reference.tables.offsets
    step_y, step_x = np.divmod(fine.reshape(len(fine), -1).argmax(axis=1), len(offsets))
    found = centre + np.stack([offsets[step_y], offsets[step_x]], axis=1)
    finite = np.isfinite(peak)
    flat = finite & (peak <= FLAT_TOLERANCE * np.abs(dc) * reference.norms)
    at_bound = ((centre == low) | (centre == high)).any(axis=1) & finite & ~flat
    return Peaks(np.clip(found, low, high), finite, flat, at_bound)


def _fine(product: np.ndarray, tables: SearchTables, centre: np.ndarray,
          buffers: Buffers) -> np.ndarray:
    """Correlation on the fine grid around each integer ``centre`` (B, m, m)."""
    count, rows, cols = product.shape
    size = len(tables.offsets)
    fine_rows = buffers.get("fine_rows", (count, size, rows), np.complex64)
    fine_cols = buffers.get("fine_cols", (count, cols, size), np.complex64)
    np.take(tables.fine_rows, centre[:, 0] + tables.reach, axis=0, out=fine_rows, mode="clip")
    np.take(tables.fine_cols, centre[:, 1] + tables.reach, axis=0, out=fine_cols, mode="clip")
    partial = buffers.get("fine_partial", (count, size, cols), np.complex64)
    np.matmul(fine_rows, product, out=partial)
    return np.matmul(partial, fine_cols).real
