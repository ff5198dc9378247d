"""Scoring against manual ROIs: known answers, real neurofinder ROIs, properties, CLI."""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from caiman_dask.cli.score import register
from caiman_dask.errors import ParameterError, ResultsError
from caiman_dask.results import (
    Estimates,
    coordinates_to_sparse,
    load_regions,
    masks_to_sparse,
    read_regions,
    save_estimates,
    score,
    score_both,
)

DIMS = (40, 56)


def _rects(*boxes: tuple[int, int, int, int], dims=DIMS) -> np.ndarray:
    """Boolean masks (K, d1, d2), one per (row0, row1, col0, col1) box."""
    out = np.zeros((len(boxes), *dims), dtype=bool)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        out[k, r0:r1, c0:c1] = True
    return out


def _regions(path: pathlib.Path) -> pathlib.Path:
    return path / "neurofinder-00.00-crop" / "regions.json"


def _summary(result) -> tuple[int, float, float, float]:
    return result.n_matched, result.precision, result.recall, result.f1


def test_exact_matches_score_one() -> None:
    true = _rects((2, 8, 3, 9), (20, 26, 30, 36), (30, 38, 5, 9))
    for crit in ("centroid", "iou"):
        res = score(true, true, criterion=crit)
        assert _summary(res) == (3, 1.0, 1.0, 1.0)
        assert res.pairs.tolist() == [[0, 0], [1, 1], [2, 2]]
    # weighted footprints binarised at 0.2 of their max give the same masks
    foot = true * 5.0 + np.where(true, 0, 0.5)  # a faint (< 0.2 max) halo is dropped
    assert score(foot, true, criterion="iou").f1 == 1.0


def test_shifted_masks() -> None:
    true = _rects((10, 20, 10, 20))
    shifted = _rects((13, 23, 10, 20))  # 3 px: centroid match; IoU 70/130 = 0.538
    farther = _rects((15, 25, 10, 20))  # 5 px: centroid match (<= 5); IoU 50/150
    gone = _rects((16, 26, 10, 20))  # 6 px: no match under either criterion
    assert _summary(score(shifted, true)) == (1, 1.0, 1.0, 1.0)
    assert score(shifted, true, criterion="iou").values[0] == pytest.approx(70 / 130)
    assert score(farther, true).n_matched == 1 and score(farther, true).values[0] == 5.0
    assert score(farther, true, criterion="iou").n_matched == 0
    assert score(gone, true).n_matched == 0 and score(gone, true, max_distance=6).n_matched == 1


def test_split_cell_matches_once() -> None:
    true = _rects((10, 14, 10, 22))  # 4 x 12 cell
    halves = _rects((10, 14, 10, 16), (10, 14, 16, 22))  # centroids 3 px off, IoU 0.5 each
    for crit in ("centroid", "iou"):
        res = score(halves, true, criterion=crit)
        assert res.n_found == 2 and res.n_true == 1
        assert _summary(res) == (1, 0.5, 1.0, pytest.approx(2 / 3))


def test_matching_is_one_to_one_and_maximal() -> None:
    # greedy nearest-first would take found 0 -> true 0 (2 px) and leave found 1 unmatched
    true = _rects((10, 11, 10, 11), (10, 11, 14, 15))
    found = _rects((10, 11, 12, 13), (10, 11, 7, 8))
    res = score(found, true, criterion="centroid")
    assert res.pairs.tolist() == [[0, 1], [1, 0]] and res.values.tolist() == [2.0, 3.0]


def test_empty_sets_have_defined_scores() -> None:
    none = np.zeros((0, *DIMS), dtype=bool)
    some = _rects((2, 8, 3, 9), (20, 26, 30, 36))
    for crit in ("centroid", "iou"):
        assert _summary(score(none, none, criterion=crit)) == (0, 1.0, 1.0, 1.0)
        assert _summary(score(none, some, criterion=crit)) == (0, 1.0, 0.0, 0.0)
        assert _summary(score(some, none, criterion=crit)) == (0, 0.0, 1.0, 0.0)
    blank = np.zeros((1, *DIMS))  # an all-zero footprint: found, but matches nothing
    assert _summary(score(blank, some)) == (0, 0.0, 0.0, 0.0)


def test_regions_json_scored_against_itself(shared_data: pathlib.Path) -> None:
    path = _regions(shared_data)
    both = score_both(path, path, dims=(256, 256))
    assert {k: _summary(r) for k, r in both.items()} == {
        "centroid": (124, 1.0, 1.0, 1.0), "iou": (124, 1.0, 1.0, 1.0)
    }


def test_regions_shifted_10px_never_match_themselves(shared_data: pathlib.Path) -> None:
    coords = read_regions(_regions(shared_data))
    dims = (266, 256)  # room for the shift: no ROI is clipped
    true = coordinates_to_sparse(coords, dims)
    moved = coordinates_to_sparse([c + [10, 0] for c in coords], dims)
    res = score(moved, true, dims=dims, criterion="centroid")
    assert len(res.pairs) and not np.any(res.pairs[:, 0] == res.pairs[:, 1])
    # the dense cells of this field put some shifted ROIs within 5 px of a *neighbour*;
    # an independent dense Hungarian over all 124 x 124 distances gives the same count
    cen = np.array([c.mean(axis=0) for c in coords])
    dist = np.linalg.norm(cen[:, None] + [10, 0] - cen[None], axis=2)
    cost = np.where(dist <= 5, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    assert res.n_matched == int((cost[rows, cols] < 1e6).sum()) == 13
    assert res.f1 == pytest.approx(13 / 124) and res.f1 < 0.15
    lone = score(moved[:, [0]], true[:, [0]], dims=dims)  # one ROI vs its shifted self
    assert _summary(lone) == (0, 0.0, 0.0, 0.0)


def test_regions_f_order_on_non_square_frame(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "regions.json"
    path.write_text(json.dumps([{"id": "a", "coordinates": [[15, 25], [15, 26], [15, 25]]},
                                {"coordinates": [[0, 0]]}]))
    dims = (20, 30)
    A = load_regions(path, dims)
    assert A.shape == (600, 2) and A.dtype == bool and A.nnz == 3  # repeated pixel stored once
    assert A[15 + 20 * 25, 0] and A[15 + 20 * 26, 0] and A[0, 1]
    dense = load_regions(path, dims, dense=True)
    assert dense.shape == (2, 20, 30) and dense[0, 15, 25] and dense[0, 15, 26]
    assert np.array_equal(A[:, 0].toarray().ravel(), dense[0].ravel(order="F"))
    est = Estimates(A=masks_to_sparse(dense.astype(np.float32)), dims=dims)
    assert np.allclose(est.centroids()[0], [15.0, 25.5])
    assert score(est, path, criterion="iou").f1 == 1.0
    with pytest.raises(ParameterError, match="disagree"):
        score(est, path, dims=(30, 20))


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"coordinates": [[1, 2]]}', "JSON list"),
    ('[{"coordinates": [[1, 2]]}, {"coords": [[1, 2]]}]', "entry 1"),
    ('[{"coordinates": [[1, 2, 3]]}]', "entry 0: 'coordinates'"),
    ('[{"coordinates": []}]', "entry 0"),
    ('[{"coordinates": [[1.5, 2]]}]', "entry 0"),
    ('[{"coordinates": [[1, 2]]}, {"coordinates": [[1, 30]]}]', "entry 1: pixel"),
])
def test_malformed_regions_name_file_and_entry(tmp_path, content, message) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message) as info:
        load_regions(path, (20, 30))
    assert "bad.json" in str(info.value)


def test_bad_options_are_refused() -> None:
    masks = _rects((2, 8, 3, 9))
    for kwargs in ({"criterion": "dice"}, {"min_iou": 0.0}, {"max_distance": -1.0},
                   {"binarize": 1.5}):
        with pytest.raises(ParameterError):
            score(masks, masks, **kwargs)
    with pytest.raises(ParameterError, match="dims"):
        score(masks_to_sparse(masks), masks_to_sparse(masks))


_box = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 8), st.integers(1, 8))


def _boxes_to_masks(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    return _rects(*[(r, r + h, c, c + w) for r, c, h, w in boxes], dims=(28, 28))


@settings(max_examples=60, deadline=None)
@given(st.lists(_box, max_size=8), st.lists(_box, max_size=8),
       st.sampled_from([0.1, 0.3, 0.5, 0.9]), st.sampled_from([1.0, 3.0, 5.0]))
def test_scores_are_bounded_and_symmetric(found, true, min_iou, max_distance) -> None:
    a, b = _boxes_to_masks(found), _boxes_to_masks(true)
    fwd = score_both(a, b, min_iou=min_iou, max_distance=max_distance)
    back = score_both(b, a, min_iou=min_iou, max_distance=max_distance)
    for crit in ("centroid", "iou"):
        f, r = fwd[crit], back[crit]
        assert all(0.0 <= x <= 1.0 for x in (f.precision, f.recall, f.f1))
        assert f.f1 == pytest.approx(r.f1)
        assert (f.precision, f.recall) == pytest.approx((r.recall, r.precision))
        assert len(set(f.pairs[:, 0])) == len(set(f.pairs[:, 1])) == f.n_matched
    iou = fwd["iou"]
    assert np.all(iou.values >= min_iou - 1e-9)


def _disks(n: int, dims: tuple[int, int], seed: int) -> sp.csc_matrix:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(6, np.array(dims) - 6, size=(n, 2))
    dr, dc = np.mgrid[-4:5, -4:5]
    inside = dr**2 + dc**2 <= 16
    coords = [np.stack([np.rint(r + dr[inside]), np.rint(c + dc[inside])], 1).astype(int)
              for r, c in centres]
    return coordinates_to_sparse(coords, dims)


def test_thousands_of_components_are_fast() -> None:
    dims = (512, 512)
    true = _disks(3000, dims, seed=1)
    found = _disks(3000, dims, seed=2)
    start = time.perf_counter()
    both = score_both(found, true, dims=dims)
    seconds = time.perf_counter() - start
    assert both["centroid"].n_matched > 300 and both["iou"].n_matched > 30
    assert seconds < 10.0, f"scoring 3000 x 3000 took {seconds:.1f} s"
    same = score_both(true, true, dims=dims)
    assert same["iou"].f1 == 1.0 and same["centroid"].n_matched >= 2990


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="caiman-dask")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_scores_a_results_file(shared_data, tmp_path, capsys) -> None:
    regions = _regions(shared_data)
    masks = load_regions(regions, (256, 256)).astype(np.float32)
    est = Estimates(A=masks, dims=(256, 256), idx_components=np.arange(0, 124, 2))
    results = save_estimates(tmp_path / "res.hdf5", est, {"data": {"fr": 7.0}})
    assert _cli(["score", str(results), str(regions), "--json"]) == 0
    accepted = json.loads(capsys.readouterr().out)["scores"]
    assert accepted["centroid"]["n_found"] == 62 and accepted["iou"]["recall"] == 0.5
    assert accepted["centroid"]["precision"] == 1.0
    assert _cli(["score", str(results), str(regions), "--all"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["criterion", "true", "found", "matched", "precision", "recall",
                                "F1"]
    assert table[1].split() == ["centroid", "124", "124", "124", "1.000", "1.000", "1.000"]
    assert table[2].split()[0] == "iou" and table[2].split()[-1] == "1.000"
