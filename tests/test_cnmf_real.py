"""fit_patch on a real 51x51x600 patch of the neurofinder crop, scored against manual ROIs."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import tifffile

from caiman_dask.cnmf import CNMFParams, evaluate_components, fit_patch, to_pixels

ORIGIN, SIZE = (90, 70), 51
PARAMS = CNMFParams().replace(data={"fr": 7.0, "decay_time": 1.0},
                              init={"K": 8, "gSig": (5, 5)}, patch={"only_init": False},
                              temporal={"p": 1})


def _inner_rois(path: pathlib.Path, margin: int = 8) -> list[np.ndarray]:
    """Manual ROIs lying entirely inside the patch, ``margin`` px from its edges."""
    regions = json.loads(path.read_text())
    out = []
    for region in regions:
        pts = np.asarray(region["coordinates"]) - np.asarray(ORIGIN)
        if pts.min() >= margin and pts.max() < SIZE - margin:
            out.append(pts)
    return out


def test_fit_patch_on_neurofinder_finds_the_manual_roi(neurofinder_tif: pathlib.Path) -> None:
    with tifffile.TiffFile(neurofinder_tif) as tif:
        movie = tif.asarray()
    r, c = ORIGIN
    patch = np.ascontiguousarray(movie[:, r:r + SIZE, c:c + SIZE], dtype=np.float32)
    res = fit_patch(patch, PARAMS)
    ev = evaluate_components(to_pixels(patch), res.A, res.C, res.b, res.f, res.YrA, PARAMS)
    A = res.A.toarray()[:, ev.idx_components]
    rois = _inner_rois(neurofinder_tif.parent / "regions.json")
    assert rois, "the chosen patch should contain a manual ROI"
    for pts in rois:
        mask = np.zeros((SIZE, SIZE))
        mask[pts[:, 0], pts[:, 1]] = 1.0
        vec = mask.ravel(order="F") / np.sqrt(mask.sum())
        assert (A.T @ vec).max() >= 0.7
    assert np.all(np.isfinite(res.C)) and res.sn.shape == (SIZE * SIZE,)
