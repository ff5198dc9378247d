"""The compiled (isotonic-regression) AR(1) pool solver against the reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from caiman_dask.cnmf import _pav
from caiman_dask.cnmf.oasis import penalty_weights


def _reference(yw: np.ndarray, g: float, s_min: float = 0.0) -> np.ndarray:
    return _pav.expand_pools(*_pav._loop_pools(yw, g, s_min), g)


def _trace(rng: np.random.Generator, T: int, g: float, *, rate: float, sn: float,
           lam: float) -> np.ndarray:
    spikes = (rng.random(T) < rate) * rng.exponential(2.0, T)
    c = scipy.signal.lfilter([1.0], [1.0, -g], spikes)
    return c + rng.normal(0.0, sn, T) - lam * penalty_weights(g, T) - 0.1


@pytest.mark.parametrize("T,g", [(1, 0.9), (7, 0.5), (600, 0.95), (600, 0.867),
                                 (3000, 0.6), (20000, 0.867), (2000, 0.999), (500, 1.0)])
def test_windowed_isotonic_equals_reference_loop(T: int, g: float) -> None:
    """Same ``c`` as the loop, including traces split into many windows (small g, long T)."""
    rng = np.random.default_rng(T)
    for lam in (0.0, 0.3, 2.0):
        yw = _trace(rng, T, g, rate=0.03, sn=0.3, lam=lam)
        ref = _reference(yw, g)
        pools = _pav._isotonic_pools(yw, g)
        assert pools is not None
        got = _pav.expand_pools(*pools, g)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12 * (1 + np.abs(ref).max()))
        np.testing.assert_array_equal(_pav.ar1_pav(yw, g), got)


def test_windows_really_split_long_traces() -> None:
    g = 0.6
    assert int(_pav._SPAN / abs(np.log(g))) < 1000  # so T=3000 above used 5+ windows


def test_pool_out_of_reach_falls_back_to_the_loop() -> None:
    """One spike then a long silence pulled down by the penalty: a single decaying pool
    longer than a window; the windowed solver declines and the loop answers."""
    g, T = 0.6, 4000
    yw = np.full(T, -1e-3)
    yw[0] = 50.0
    assert _pav._isotonic_pools(yw, g) is None
    np.testing.assert_allclose(_pav.ar1_pav(yw, g), _reference(yw, g), rtol=1e-12)


def test_without_scipy_isotonic_or_with_s_min_the_loop_is_used(monkeypatch) -> None:
    rng = np.random.default_rng(5)
    yw = _trace(rng, 800, 0.9, rate=0.05, sn=0.2, lam=0.5)
    np.testing.assert_array_equal(_pav.ar1_pav(yw, 0.9, s_min=0.4), _reference(yw, 0.9, 0.4))
    fast = _pav.ar1_pav(yw, 0.9)
    monkeypatch.setattr(_pav, "isotonic_regression", None)
    np.testing.assert_array_equal(_pav.ar1_pav(yw, 0.9), _reference(yw, 0.9))
    np.testing.assert_allclose(fast, _reference(yw, 0.9), rtol=1e-9, atol=1e-12)
