"""Pool-adjacent-violators for AR(1) traces: the exact core of OASIS.

OASIS for AR(1) solves ``min 1/2 ||yw - c||^2`` subject to ``c_t >= g c_{t-1}`` and
``c >= 0`` (``yw`` already carries the sparsity penalty). With ``u_t = c_t g^{-(t-r)}``
the constraint reads ``u_t >= u_{t-1}`` and the objective is
``1/2 sum_t g^{2(t-r)} (yw_t g^{-(t-r)} - u_t)^2``: a weighted isotonic regression, whose
solution clipped at 0 is the non-negative optimum (the problem is strictly convex, so
both algorithms give the same ``c``). SciPy >= 1.12 runs that regression in compiled
code (:func:`scipy.optimize.isotonic_regression`), about ten times faster than the
reference loop below on traces of a few hundred frames.

``g^{±(t-r)}`` overflows on long traces, so a trace is solved in windows of ``D`` frames
with ``|D log g| <= _SPAN``. The pools found so far that start within ``D`` frames of the
window are carried into it as aggregate points (a pool acts on later samples only through
its weighted mean), so each window continues the left-to-right algorithm exactly. If the
window's first block would still merge with a pool out of reach (a single pool decaying
over thousands of frames), or a minimal spike size ``s_min`` is asked for, or SciPy is
older, the reference loop solves the trace.
"""

from __future__ import annotations

import math

import numpy as np

try:  # SciPy >= 1.12
    from scipy.optimize import isotonic_regression
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    isotonic_regression = None

# Largest |(t - r) log g| in a window: weights g^{2(t-r)} stay within 1e-261 .. 1e261.
_SPAN = 300.0


def ar1_pav(yw: np.ndarray, g: float, s_min: float = 0.0) -> np.ndarray:
    """Non-negative AR(1) pool solution ``c`` (T,) of the penalised trace ``yw``.

    Parameters
    ----------
    yw : ndarray, shape (T,)
        Baseline-free trace minus ``lam`` times the penalty weights.
    g : float
        AR(1) coefficient.
    s_min : float
        Minimal spike size: a pool starts only where the jump exceeds it.

    Returns
    -------
    ndarray, shape (T,)
        Piecewise exponential ``c``, clipped at 0.
    """
    yw = np.asarray(yw, dtype=np.float64)
    if isotonic_regression is not None and s_min == 0.0 and g > 0.0 and yw.size:
        pools = _isotonic_pools(yw, g)
        if pools is not None:
            return expand_pools(*pools, g)
    return expand_pools(*_loop_pools(yw, g, s_min), g)


def expand_pools(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 g: float) -> np.ndarray:
    """Piecewise exponential trace ``max(value_i, 0) * g**k`` over pool ``i``."""
    offsets = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
    return np.repeat(np.maximum(values, 0.0), lengths) * float(g) ** offsets


def _loop_pools(yw: np.ndarray, g: float, s_min: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference pool-adjacent-violators loop: (value at start, start, length) per pool."""
    T = yw.size
    gp = (float(g) ** np.arange(T + 1)).tolist()
    g2 = (float(g) ** (2 * np.arange(T + 1))).tolist()
    vs: list[float] = []
    ws: list[float] = []
    ls: list[int] = []
    for y in yw.tolist():
        v, w, n = y, 1.0, 1
        while vs:
            lp = ls[-1]
            prev = vs[-1] / ws[-1]
            if v / w >= gp[lp] * (prev if prev > 0.0 else 0.0) + s_min:
                break
            v = vs.pop() + gp[lp] * v
            w = ws.pop() + g2[lp] * w
            n += ls.pop()
        vs.append(v)
        ws.append(w)
        ls.append(n)
    lengths = np.asarray(ls, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.asarray(vs) / np.asarray(ws), starts, lengths


def _isotonic_pools(yw: np.ndarray, g: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Pools by windowed isotonic regression; ``None`` when a pool reaches too far back."""
    T = yw.size
    log_g = math.log(g)
    span = T if log_g == 0.0 else max(1, int(_SPAN / abs(log_g)))
    stack = _Pools.empty()
    for a in range(0, T, span):
        fixed = int(np.searchsorted(stack.starts, a - span))  # pools out of reach
        window = _solve_window(stack.tail(fixed), yw[a:a + span], a, g)
        if fixed and _violates(stack, fixed - 1, window.values[0], g):
            return None
        stack = stack.head(fixed).extend(window)
    return stack.values, stack.starts, stack.lengths


class _Pools:
    """Pools as parallel arrays: value at start, weight ``sum g^{2k}``, start, length."""

    __slots__ = ("values", "weights", "starts", "lengths")

    def __init__(self, values: np.ndarray, weights: np.ndarray, starts: np.ndarray,
                 lengths: np.ndarray):
        self.values, self.weights = values, weights
        self.starts, self.lengths = starts, lengths

    @classmethod
    def empty(cls) -> _Pools:
        """No pools."""
        return cls(np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64))

    def head(self, n: int) -> _Pools:
        """The first ``n`` pools."""
        return _Pools(self.values[:n], self.weights[:n], self.starts[:n], self.lengths[:n])

    def tail(self, n: int) -> _Pools:
        """The pools from index ``n`` on."""
        return _Pools(self.values[n:], self.weights[n:], self.starts[n:], self.lengths[n:])

    def extend(self, other: _Pools) -> _Pools:
        """These pools followed by ``other``'s."""
        return _Pools(*(np.concatenate([getattr(self, k), getattr(other, k)])
                        for k in self.__slots__))


def _solve_window(carried: _Pools, y: np.ndarray, a: int, g: float) -> _Pools:
    """Isotonic regression of the carried pools and the samples ``y`` from frame ``a``."""
    offsets = np.concatenate([carried.starts - a, np.arange(y.size)]).astype(np.float64)
    scale = float(g) ** offsets
    weights = np.concatenate([carried.weights, np.ones(y.size)]) * scale * scale
    targets = np.concatenate([carried.values, y]) / scale
    fit = isotonic_regression(targets, weights=weights, increasing=True)
    first = np.asarray(fit.blocks[:-1], dtype=np.int64)
    starts = np.concatenate([carried.starts, a + np.arange(y.size)])[first]
    lengths = np.add.reduceat(np.concatenate([carried.lengths,
                                              np.ones(y.size, np.int64)]), first)
    block_scale = scale[first]
    return _Pools(fit.x[first] * block_scale,
                  np.add.reduceat(weights, first) / (block_scale * block_scale),
                  starts, lengths)


def _violates(stack: _Pools, i: int, value: float, g: float) -> bool:
    """Would a block starting right after pool ``i`` with ``value`` merge into it?

    Only a positive pool can pull later values down; merging non-positive pools leaves
    the clipped solution unchanged.
    """
    prev = float(stack.values[i])
    return prev > 0.0 and value < float(g) ** int(stack.lengths[i]) * prev
