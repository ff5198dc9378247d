"""One check of "identical results" for every test that compares two runs."""

from __future__ import annotations

import numpy as np

from caiman_dask.results.estimates import COMPONENT_FIELDS, INDEX_FIELDS, PIXEL_FIELDS


def assert_identical(a, b) -> None:
    """Bit-identical estimates: same footprints, traces, background, decisions."""
    assert a.A.shape == b.A.shape and a.A.shape[1] > 0
    assert (a.A != b.A).nnz == 0, f"A differs by up to {abs(a.A - b.A).max()}"
    for name in COMPONENT_FIELDS + PIXEL_FIELDS + INDEX_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
