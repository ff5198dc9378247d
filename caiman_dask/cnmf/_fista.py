"""Non-negative sparse deconvolution of many traces at once (FISTA, spike domain).

Solves, for every row of ``Y`` with its own AR kernel ``h`` (n, T) and penalty ``lam``:

    min_{s >= 0, b}  1/2 ||y - b - h * s||^2 + lam * sum_{t>=1} s_t

``*`` is causal convolution, done with FFTs of length >= 2T so that there is no
wrap-around; the baseline ``b`` is eliminated in closed form (variable projection: the
residual is centred, or clipped at b >= 0 with ``bas_nonneg``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import fft as sfft


@dataclasses.dataclass(frozen=True)
class Kernels:
    """FFTs of the impulse responses of ``n`` traces, plus step sizes."""

    H: np.ndarray  # (n, nfft//2 + 1) complex
    nfft: int
    T: int
    step: np.ndarray  # (n, 1) 1 / Lipschitz constant

    @classmethod
    def from_impulse(cls, h: np.ndarray) -> Kernels:
        n, T = h.shape
        nfft = sfft.next_fast_len(2 * T, real=True)
        H = sfft.rfft(h, n=nfft, axis=1)
        lipschitz = np.sum(np.abs(h), axis=1) ** 2
        return cls(H=H, nfft=nfft, T=T, step=(1.0 / lipschitz)[:, None])

    def forward(self, s: np.ndarray) -> np.ndarray:
        """Calcium ``h * s`` (causal convolution)."""
        return sfft.irfft(sfft.rfft(s, n=self.nfft, axis=1) * self.H, n=self.nfft,
                          axis=1)[:, :self.T]

    def adjoint(self, r: np.ndarray) -> np.ndarray:
        """``K^T r``: anti-causal correlation of the residual with ``h``."""
        return sfft.irfft(sfft.rfft(r, n=self.nfft, axis=1) * np.conj(self.H), n=self.nfft,
                          axis=1)[:, :self.T]


def baseline(resid: np.ndarray, bas_nonneg: bool) -> np.ndarray:
    """Least-squares baseline of each row of ``resid = y - c`` (clipped at 0 if asked)."""
    b = resid.mean(axis=1, keepdims=True)
    return np.maximum(b, 0.0) if bas_nonneg else b


def residual(Y: np.ndarray, S: np.ndarray, kern: Kernels, bas_nonneg: bool) -> np.ndarray:
    """Residual ``y - b - h*s`` with the optimal baseline."""
    R = Y - kern.forward(S)
    return R - baseline(R, bas_nonneg)


def fista(Y: np.ndarray, kern: Kernels, lam: np.ndarray, S0: np.ndarray, *,
          iters: int, bas_nonneg: bool, tol: float = 1e-4) -> np.ndarray:
    """Run up to ``iters`` FISTA steps with gradient-based adaptive restart; returns S.

    Stops early when no spike moved by more than ``tol`` times the largest spike.
    """
    weights = np.ones(Y.shape[1])
    weights[0] = 0.0
    shrink = kern.step * lam[:, None] * weights[None, :]
    X = S0
    Z = S0.copy()
    t = np.ones((Y.shape[0], 1))
    for it in range(iters):
        grad = -kern.adjoint(residual(Y, Z, kern, bas_nonneg))
        Xn = np.maximum(Z - kern.step * grad - shrink, 0.0)
        restart = np.sum((Z - Xn) * (Xn - X), axis=1, keepdims=True) > 0
        t = np.where(restart, 1.0, t)
        tn = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        if it % 10 == 9 and np.abs(Xn - X).max() <= tol * max(float(Xn.max()), 1e-30):
            return Xn
        Z = Xn + ((t - 1.0) / tn) * (Xn - X)
        X, t = Xn, tn
    return X


def _log_ratio(Y, S, kern, thresh, bas_nonneg) -> np.ndarray:
    rss = np.sum(residual(Y, S, kern, bas_nonneg) ** 2, axis=1)
    return np.log(np.maximum(rss, 1e-300) / thresh)


def _cold_bracket(Y, kern, thresh, bas_nonneg, iters):
    """Solve at lam = 0; bracket log(lam) by 1e-4 lam_max and lam_max (no spikes)."""
    S = fista(Y, kern, np.zeros(Y.shape[0]), np.zeros_like(Y), iters=iters,
              bas_nonneg=bas_nonneg)
    f_lo = _log_ratio(Y, S, kern, thresh, bas_nonneg)
    lam_max = np.maximum(kern.adjoint(Y - baseline(Y, bas_nonneg))[:, 1:].max(axis=1), 1e-12)
    f_hi = np.maximum(_log_ratio(Y, np.zeros_like(Y), kern, thresh, bas_nonneg), 1e-3)
    return S, f_lo < 0, np.log(lam_max * 1e-4), np.log(lam_max), f_lo, f_hi


def _warm_bracket(warm_s, warm_lam):
    """Bracket log(lam) within a factor 10 of the previous lam, first guess at it."""
    active = warm_lam > 0
    x0 = np.log(np.where(active, warm_lam, 1.0))
    ones = np.ones_like(x0)
    return warm_s.copy(), active, x0 - np.log(10.0), x0 + np.log(10.0), -ones, ones


def solve_constrained(Y: np.ndarray, kern: Kernels, sn: np.ndarray, *, bas_nonneg: bool,
                      warm: tuple[np.ndarray, np.ndarray] | None = None, n_search: int = 6,
                      inner: int = 25, final: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Find per-row lam with ``||y - b - c||^2 ~= sn^2 T`` and solve; returns (S, lam).

    Rows whose residual already exceeds the target at lam = 0 keep lam = 0. For the
    others ``log(rss / target)`` is driven to 0 by regula falsi (Illinois variant) on
    ``log(lam)``, bracketed by ``1e-4 lam_max`` and ``lam_max`` (the smallest lam with
    no spikes), or, given ``warm = (S, lam)`` from a previous solve of similar traces,
    by a factor 10 around that lam. Every step warm-starts from the previous spikes.
    """
    thresh = sn ** 2 * Y.shape[1]
    S, active, lo, hi, f_lo, f_hi = (_cold_bracket(Y, kern, thresh, bas_nonneg, final)
                                     if warm is None else _warm_bracket(*warm))
    x = lo
    for _ in range(n_search):
        x = np.where(active, hi - f_hi * (hi - lo) / (f_hi - f_lo), lo)
        S = fista(Y, kern, np.where(active, np.exp(x), 0.0), S, iters=inner,
                  bas_nonneg=bas_nonneg)
        fx = _log_ratio(Y, S, kern, thresh, bas_nonneg)
        if np.all(np.abs(fx[active]) < 2e-3):
            break
        below = fx < 0
        f_hi = np.where(below, f_hi * 0.5, fx)  # Illinois: halve the stale end's value
        f_lo = np.where(below, fx, f_lo * 0.5)
        lo, hi = np.where(below, x, lo), np.where(below, hi, x)
    lam = np.where(active, np.exp(x), 0.0)
    return fista(Y, kern, lam, S, iters=final, bas_nonneg=bas_nonneg), lam
