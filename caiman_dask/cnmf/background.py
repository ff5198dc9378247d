"""Low-rank non-negative background (neuropil + baseline) and small NMF helpers."""

from __future__ import annotations

import numpy as np


def nmf_factors(X: np.ndarray, rank: int, *, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic rank-``rank`` NMF ``X ~ W @ H`` by HALS, ``X`` (npix, T) >= 0.

    Column ``j`` of ``W`` starts as the mean of ``X`` over the ``j``-th of ``rank``
    contiguous stretches of time, so results do not depend on a random seed.
    """
    npix, T = X.shape
    if rank == 0:
        return np.zeros((npix, 0)), np.zeros((0, T))
    edges = np.linspace(0, T, rank + 1).astype(int)
    W = np.stack([X[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)],
                 axis=1) + 1e-6
    H = np.zeros((rank, T))
    for _ in range(iters):
        H = hals_rows(W.T @ X, W.T @ W, H)
        W = hals_rows((X @ H.T).T, H @ H.T, W.T).T
    return W, H


def hals_rows(P: np.ndarray, Q: np.ndarray, H: np.ndarray, *, sweeps: int = 1) -> np.ndarray:
    """Non-negative HALS sweeps on ``H`` minimising ``||X - W H||`` given ``P = W^T X``,
    ``Q = W^T W`` (rows of H updated one at a time, in order)."""
    H = H.copy()
    for _ in range(sweeps):
        for j in range(H.shape[0]):
            if Q[j, j] <= 0:
                H[j] = 0.0
                continue
            H[j] = np.maximum(H[j] + (P[j] - Q[j] @ H) / Q[j, j], 0.0)
    return H


def rank1_nmf(apply: np.ndarray, right: np.ndarray, *, iters: int = 10
              ) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 NMF of the product ``apply @ right`` without forming it.

    ``apply`` (npix, m) and ``right`` (m, T) are non-negative factors (e.g. footprints and
    traces of the components to merge). Returns ``(a, c)`` with ``a`` of unit norm.
    """
    c = right.sum(axis=0)
    a = np.zeros(apply.shape[0])
    for _ in range(iters):
        a = np.maximum(apply @ (right @ c), 0.0) / max(float(c @ c), 1e-30)
        norm = float(np.linalg.norm(a))
        if norm == 0:
            break
        a /= norm
        c = np.maximum((a @ apply) @ right, 0.0)
    return a, c


def combine_backgrounds(B: np.ndarray, F: np.ndarray, nb: int, *, iters: int = 30
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``nb`` NMF of ``B @ F`` (e.g. all patches' backgrounds placed on the FOV).

    Works on the factors only: ``B`` (npix, m) may be sparse, ``F`` (m, T).
    """
    edges = np.linspace(0, F.shape[1], nb + 1).astype(int)
    W = np.stack([np.asarray(B @ F[:, a:b].mean(axis=1)).ravel()
                  for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1) + 1e-6
    H = np.zeros((nb, F.shape[1]))
    for _ in range(iters):
        WB = np.asarray((B.T @ W)).T  # (nb, m)
        H = hals_rows(WB @ F, W.T @ W, H)
        XHt = np.asarray(B @ (F @ H.T))  # (npix, nb)
        W = hals_rows(XHt.T, H @ H.T, W.T).T
    return W, H
