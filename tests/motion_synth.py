"""Synthetic two-photon-like images and movies with known motion, for the motion tests.

Shifts follow the package's convention: a frame whose content moved by ``d``
(``frame(y) = image(y - d)``) must be corrected by the shift ``-d``. Frames are cut from
the middle of a padded image after moving it, so no border artefact enters them.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.ndimage as ndi


def neuron_image(shape: tuple[int, int], *, n_neurons: int = 150, seed: int = 0,
                 pad: int = 16) -> np.ndarray:
    """A field of view: smooth background + Gaussian-blob neurons (float32, padded).

    The returned image is ``2 * pad`` larger than ``shape`` on each axis; crop it with
    :func:`crop` after moving it.
    """
    rng = np.random.default_rng(seed)
    rows, cols = shape[0] + 2 * pad, shape[1] + 2 * pad
    background = ndi.gaussian_filter(rng.standard_normal((rows, cols)), 20)
    background = 200 + 60 * background / background.std()
    image = np.zeros((rows, cols))
    ys, xs = rng.uniform(0, rows, n_neurons), rng.uniform(0, cols, n_neurons)
    image[ys.astype(int), xs.astype(int)] = rng.uniform(300, 1200, n_neurons)
    neurons = ndi.gaussian_filter(image, 3) * 2 * np.pi * 9
    return (background + neurons).astype(np.float32)


def crop(image: np.ndarray, pad: int) -> np.ndarray:
    """The middle of a padded image (or of each frame of a padded stack)."""
    return image[..., pad:image.shape[-2] - pad, pad:image.shape[-1] - pad]


def translate(image: np.ndarray, displacement: tuple[float, float]) -> np.ndarray:
    """Move the content of ``image`` by ``displacement`` (exact band-limited shift)."""
    spectrum = np.fft.fft2(image.astype(np.float64))
    return np.fft.ifft2(ndi.fourier_shift(spectrum, displacement)).real.astype(np.float32)


def rigid_movie(image: np.ndarray, displacements: np.ndarray, *, pad: int,
                noise: float = 0.0, seed: int = 1) -> np.ndarray:
    """Frames of ``image`` moved by each displacement (n, 2), cropped, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    frames = np.stack([crop(translate(image, d), pad) for d in displacements])
    if noise:
        frames += rng.normal(0, noise, frames.shape).astype(np.float32)
    return frames


def smooth_field(shape: tuple[int, int], *, amplitude: float, period: float,
                 phase: float, origin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth non-rigid displacement field (dy, dx), float32, each (Y, X).

    ``origin`` is the coordinate of pixel 0 (``-pad`` for a padded image), so the field of
    a padded image matches the field of its crop.
    """
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64) + origin
    dy = amplitude * np.sin(2 * np.pi * cols / period + phase)
    dx = amplitude * np.cos(2 * np.pi * rows / period + 0.7 * phase)
    return dy.astype(np.float32), dx.astype(np.float32)


def deform(image: np.ndarray, field: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Warp ``image`` so that ``frame(p) = image(p + shift(p))``: ``shift`` corrects it."""
    dy, dx = field
    rows, cols = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32)
    return cv2.remap(image, cols + dx, rows + dy, cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)


def field_at(field: tuple[np.ndarray, np.ndarray], rows: np.ndarray,
             cols: np.ndarray) -> np.ndarray:
    """Field values (len(rows), len(cols), 2) at pixel coordinates (bilinear)."""
    grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([ndi.map_coordinates(f.astype(np.float64), [grid_r, grid_c], order=1)
                     for f in field], axis=-1)
