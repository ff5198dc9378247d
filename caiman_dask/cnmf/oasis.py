"""OASIS deconvolution of calcium traces with the noise-constrained sparsity penalty.

The model (Friedrich, Zhou & Paninski 2017, PLoS Comput Biol 13:e1005423) is
``y = b + c + noise`` with ``c`` an AR(p) process driven by non-negative spikes:
``s_t = c_t - sum_j g_j c_{t-j} >= 0``. The problem solved is

    min_{c, b}  1/2 ||y - b - c||^2 + lam * sum_{t>=1} s_t   subject to  s >= 0

where ``lam`` is chosen per trace so that the residual energy equals ``sn**2 * T``
(CaImAn's ``constrained_foopsi`` semantics). ``s_0`` is not penalised: it is the initial
value ``c1``, so the first frame carries no spike.

* AR(1) is solved exactly by OASIS's pool-adjacent-violators algorithm
  (:func:`oasis_ar1`), with the lam update from the piecewise-linear path of the pools.
* AR(2) (and AR(1) on request) is solved by an accelerated projected-gradient method in
  the spike domain (FISTA with adaptive restart) that runs on many traces at once with
  FFT convolutions; lam is found by a bisection in log space shared by all traces. This
  converges to the same convex optimum as an exact solver; OASIS's greedy AR(2) pooling
  is only approximate.

The returned ``c`` includes the initial decay ``c1 * h_t`` (``h`` the AR impulse
response); ``s`` has ``s[0] == 0``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from caiman_dask.cnmf._fista import Kernels, baseline, solve_constrained
from caiman_dask.cnmf._pav import ar1_pav
from caiman_dask.cnmf.noise import estimate_time_constant, get_noise_fft
from caiman_dask.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Deconvolution:
    """Result of deconvolving ``n`` traces of ``T`` frames.

    ``c``/``s`` (n, T) denoised calcium and spikes; ``bl`` (n,) baseline; ``c1`` (n,)
    initial calcium value; ``g`` (n, p) AR coefficients; ``sn`` (n,) noise level;
    ``lam`` (n,) sparsity penalty found by the noise constraint.
    """

    c: np.ndarray
    s: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    g: np.ndarray
    sn: np.ndarray
    lam: np.ndarray


def impulse_response(g: np.ndarray, T: int) -> np.ndarray:
    """AR impulse responses ``h`` (n, T) for coefficient rows ``g`` (n, p), ``h_0 = 1``."""
    g = np.atleast_2d(np.asarray(g, dtype=np.float64))
    h = np.zeros((g.shape[0], T))
    h[:, 0] = 1.0
    for t in range(1, T):
        h[:, t] = g[:, 0] * h[:, t - 1] + (g[:, 1] * h[:, t - 2] if g.shape[1] > 1 and t > 1
                                          else 0.0)
        if t > 8 and np.all(np.abs(h[:, t]) < 1e-9):
            break
    return h


def penalty_weights(g: float, T: int) -> np.ndarray:
    """AR(1) weights ``G^T m`` turning ``lam * sum_{t>=1} s_t`` into a linear term in c."""
    w = np.full(T, 1.0 - g)
    w[0] = -g
    w[-1] = 1.0
    return w


def oasis_ar1(y: np.ndarray, g: float, *, lam: float = 0.0,
              s_min: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact OASIS for AR(1): ``min 1/2||y - c||^2 + lam sum_{t>=1} s_t, s >= 0``.

    Parameters
    ----------
    y : ndarray, shape (T,)
        Baseline-free trace.
    g : float
        AR(1) coefficient in (0, 1).
    lam : float
        Sparsity penalty.
    s_min : float
        Minimal spike size (hard threshold, 0 for the convex problem).

    Returns
    -------
    c, s : ndarray, shape (T,)
    """
    y = np.asarray(y, dtype=np.float64)
    yw = y - lam * penalty_weights(g, y.size) if lam else y
    c = ar1_pav(yw, float(g), float(s_min))
    s = np.empty_like(c)
    s[0] = 0.0
    s[1:] = c[1:] - g * c[:-1]
    return c, np.maximum(s, 0.0)


def _pool_projection(c: np.ndarray, g: float):
    """Linear map z -> pool-wise AR(1) least-squares fit, for the pools of solution ``c``.

    Pools whose value is clipped to 0 map everything to 0 (they stay at 0 nearby).
    """
    T = c.size
    starts = np.flatnonzero(np.r_[True, np.abs(c[1:] - g * c[:-1]) > 1e-12 * (1 + c[1:])])
    lengths = np.diff(np.r_[starts, T])
    decay = g ** (np.arange(T) - np.repeat(starts, lengths))
    inv_w = 1.0 / np.add.reduceat(decay * decay, starts)
    live = np.repeat(c[starts] > 0, lengths)

    def project(z: np.ndarray) -> np.ndarray:
        vals = np.add.reduceat(decay * z, starts) * inv_w
        return np.where(live, np.repeat(vals, lengths) * decay, 0.0)

    return project


def _lam_and_baseline(y: np.ndarray, c: np.ndarray, g: float, thresh: float,
                      bas_nonneg: bool) -> tuple[float, float]:
    """With the pools of ``c`` fixed the residual ``r = e - b u + lam v`` is affine in
    (b, lam). Optimality in b means ``sum(r) = 0``; then pick lam >= 0 so that
    ``||r||^2`` equals ``thresh`` (it is quadratic in lam)."""
    project = _pool_projection(c, g)
    ones = np.ones_like(y)
    e, u, v = y - project(y), ones - project(ones), project(penalty_weights(g, y.size))
    su = float(u.sum())
    if abs(su) < 1e-12:
        return 0.0, float(np.mean(y - c))
    e2, v2 = e - e.sum() / su * u, v - v.sum() / su * u
    a, half_b, c0 = float(v2 @ v2), float(e2 @ v2), float(e2 @ e2) - thresh
    lam = 0.0
    if a > 0 and c0 < 0:
        lam = (-half_b + np.sqrt(max(half_b * half_b - a * c0, 0.0))) / a
    b = float((e + lam * v).sum()) / su
    return max(lam, 0.0), (max(b, 0.0) if bas_nonneg else b)


def constrained_oasis_ar1(y: np.ndarray, g: float, sn: float, *, bas_nonneg: bool = False,
                          s_min: float = 0.0, max_iter: int = 15,
                          start: tuple[float, float] | None = None
                          ) -> tuple[np.ndarray, float, float]:
    """AR(1) OASIS with lam and baseline chosen so that ``||y - b - c||^2 = sn^2 T``.

    Returns ``(c, b, lam)``. Each iteration solves exactly for the current (b, lam), then
    moves both to where the residual meets the constraint if the pools stayed fixed (on
    that piece the residual is affine in b and lam), as in the OASIS paper; it stops when
    the pools no longer change. ``start`` = (b, lam) of a similar trace (the previous sweep
    of a temporal update) replaces the cold start (15th percentile, lam = 0).
    """
    thresh = sn * sn * y.size
    if start is None:
        b, lam = float(np.percentile(y, 15)), 0.0
    else:
        b, lam = float(start[0]), max(float(start[1]), 0.0)
    b = max(b, 0.0) if bas_nonneg else b
    c = np.zeros_like(y)
    for _ in range(max_iter):
        c_new, _ = oasis_ar1(y - b, g, lam=lam, s_min=s_min)
        lam_new, b_new = _lam_and_baseline(y, c_new, g, thresh, bas_nonneg)
        done = np.array_equal(c_new > 0, c > 0) and abs(lam_new - lam) <= 1e-6 * (1 + lam)
        c, lam, b = c_new, lam_new, b_new
        if done:
            break
    c, _ = oasis_ar1(y - b, g, lam=lam, s_min=s_min)
    return c, b, lam


def _ar_coefficients(Y: np.ndarray, g: np.ndarray | None, sn: np.ndarray, *, p: int,
                     lags: int, fudge_factor: float) -> np.ndarray:
    """Per-row AR coefficients: given (broadcast) or estimated from each trace."""
    if g is not None:
        g = np.asarray(g, dtype=np.float64).reshape(-1, p)
        return np.broadcast_to(g, (Y.shape[0], p)).copy()
    return np.array([estimate_time_constant(y, p=p, sn=float(s), lags=lags,
                                            fudge_factor=fudge_factor)
                     for y, s in zip(Y, sn, strict=True)]).reshape(-1, p)


def _deconvolve_ar1_exact(Y: np.ndarray, g: np.ndarray, sn: np.ndarray, *,
                          bas_nonneg: bool, s_min: float, warm: Deconvolution | None) -> tuple:
    starts = ([None] * Y.shape[0] if warm is None
              else list(zip(warm.bl.tolist(), warm.lam.tolist(), strict=True)))
    out = [constrained_oasis_ar1(y, float(gi[0]), float(s), bas_nonneg=bas_nonneg,
                                 s_min=s_min, start=st)
           for y, gi, s, st in zip(Y, g, sn, starts, strict=True)]
    c = np.array([o[0] for o in out]).reshape(Y.shape)
    s = np.zeros_like(c)
    s[:, 1:] = np.maximum(c[:, 1:] - g[:, :1] * c[:, :-1], 0.0)
    return c, s, np.array([o[1] for o in out]), c[:, 0].copy(), np.array([o[2] for o in out])


def _deconvolve_fista(Y: np.ndarray, g: np.ndarray, sn: np.ndarray, *, bas_nonneg: bool,
                      warm: Deconvolution | None) -> tuple:
    kern = Kernels.from_impulse(impulse_response(g, Y.shape[1]))
    start = None
    if warm is not None:
        spikes = warm.s.copy()
        spikes[:, 0] = warm.c1
        start = (spikes, warm.lam)
    S, lam = solve_constrained(Y, kern, sn, bas_nonneg=bas_nonneg, warm=start)
    c = kern.forward(S)
    c = np.maximum(c, 0.0)
    bl = baseline(Y - c, bas_nonneg)[:, 0]
    c1 = S[:, 0].copy()
    S[:, 0] = 0.0
    return c, S, bl, c1, lam


def deconvolve(Y: np.ndarray, *, p: int = 2, g: np.ndarray | None = None,
               sn: np.ndarray | None = None, bas_nonneg: bool = False,
               noise_range: tuple[float, float] = (0.25, 0.5), noise_method: str = "mean",
               lags: int = 5, fudge_factor: float = 0.96, s_min: float | None = None,
               exact_ar1: bool = True, warm: Deconvolution | None = None) -> Deconvolution:
    """Deconvolve traces with the noise constraint (``constrained_foopsi`` semantics).

    Parameters
    ----------
    Y : ndarray, shape (n, T) or (T,)
        Raw traces (baseline included).
    p : {0, 1, 2}
        AR order; 0 returns the traces clipped at 0 with no spikes.
    g : ndarray, shape (p,) or (n, p), optional
        AR coefficients; estimated per trace from its autocovariance when omitted.
    sn : ndarray, shape (n,), optional
        Noise levels; estimated by :func:`~caiman_dask.cnmf.noise.get_noise_fft`.
    bas_nonneg : bool
        Constrain the baseline to be >= 0.
    noise_range, noise_method, lags, fudge_factor
        As in :mod:`caiman_dask.cnmf.noise`.
    s_min : float, optional
        Minimal spike size (AR(1) exact solver only; ignored by the AR(2) solver).
    exact_ar1 : bool
        Use the exact pool-adjacent-violators solver for p=1 (else the vectorised solver).
    warm : Deconvolution, optional
        Result for the same traces one step earlier (e.g. the previous sweep of a temporal
        update): the exact AR(1) solver starts from its baseline and ``lam``, the vectorised
        solver from its spikes, searching lam near its ``lam``.

    Returns
    -------
    Deconvolution
    """
    if p not in (0, 1, 2):
        raise ParameterError(f"temporal.p={p!r} is invalid: the AR order must be 0, 1 or 2")
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    n, T = Y.shape
    sn = (get_noise_fft(Y, noise_range=noise_range, noise_method=noise_method)
          if sn is None else np.broadcast_to(np.asarray(sn, dtype=np.float64), (n,)).copy())
    if p == 0:
        zeros = np.zeros(n)
        return Deconvolution(np.maximum(Y, 0.0), np.zeros_like(Y), zeros, zeros.copy(),
                             np.zeros((n, 0)), sn, zeros.copy())
    g = _ar_coefficients(Y, g, sn, p=p, lags=lags, fudge_factor=fudge_factor)
    if p == 1 and exact_ar1:
        parts = _deconvolve_ar1_exact(Y, g, sn, bas_nonneg=bas_nonneg, s_min=s_min or 0.0,
                                      warm=warm)
    else:
        parts = _deconvolve_fista(Y, g, sn, bas_nonneg=bas_nonneg, warm=warm)
    c, s, bl, c1, lam = parts
    return Deconvolution(c=c, s=s, bl=np.asarray(bl, dtype=np.float64), c1=c1, g=g, sn=sn,
                         lam=np.asarray(lam, dtype=np.float64))


def constrained_foopsi(y: np.ndarray, **options) -> Deconvolution:
    """Deconvolve one trace (T,); the result's arrays keep a leading axis of length 1.

    Keyword options are those of :func:`deconvolve`.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ParameterError(f"constrained_foopsi takes one trace of shape (T,), got {y.shape}")
    return deconvolve(y[None, :], **options)
