"""Property tests (hypothesis) of the pure code the whole job rests on.

Complements the properties in test_geometry.py, test_plan.py and test_score.py: the
2-D patch grid and its overlaps, tile overlaps, the chunk arithmetic against brute
force, plan round trips, aligned-write detection, and the one-to-one matching.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caiman_dask.alignment import validate_aligned_writes
from caiman_dask.chunking import (
    axis_amplification,
    best_spatial_chunk,
    divisors,
    frame_chunks,
    time_extent,
)
from caiman_dask.errors import ChunkAlignmentError
from caiman_dask.geometry import patch_axes, patch_grid, tile_axes
from caiman_dask.layout import layout_from_chunks
from caiman_dask.plan import ChunkPlan, plan_chunks
from caiman_dask.results import score_both
from caiman_dask.results.score import match_pairs

pytestmark = pytest.mark.timeout(120)
FAST = settings(max_examples=60, deadline=None)


def _overlap(a: slice, b: slice) -> int:
    return max(0, min(a.stop, b.stop) - max(a.start, b.start))


# ---------------------------------------------------------------- geometry


@FAST
@given(Y=st.integers(8, 300), X=st.integers(8, 300), rf=st.integers(2, 60),
       stride_frac=st.floats(0, 0.99), border=st.integers(0, 3))
def test_patch_grid_covers_the_frame_row_major(Y, X, rf, stride_frac, border) -> None:
    stride = int(stride_frac * 2 * rf)
    ys, xs = patch_axes((Y, X), rf=rf, stride=stride, border_pix=border)
    grid = patch_grid((Y, X), rf=rf, stride=stride, border_pix=border)
    assert len(grid) == len(ys) * len(xs)
    assert [p.index for p in grid] == list(range(len(grid)))
    assert [(p.y, p.x) for p in grid] == list(itertools.product(ys, xs))  # y outer, x inner
    covered = np.zeros((Y, X), dtype=np.int32)
    for p in grid:
        covered[p.slices] += 1
    inner = covered[border:Y - border, border:X - border]
    assert inner.min() >= 1  # every usable pixel is in a patch
    assert covered.sum() == inner.sum()  # and nothing of the border is


@FAST
@given(extent=st.integers(10, 600), rf=st.integers(2, 60), stride_frac=st.floats(0, 0.99))
def test_neighbouring_patches_overlap_by_stride_plus_one(extent, rf, stride_frac) -> None:
    stride = int(stride_frac * 2 * rf)
    ys, _ = patch_axes((extent, 8), rf=rf, stride=stride)
    overlaps = [_overlap(a, b) for a, b in itertools.pairwise(ys)]
    if extent > 2 * rf + 1:
        # regular neighbours: exactly stride + 1 (CaImAn's step 2*rf - stride, width 2*rf+1)
        assert all(o == stride + 1 for o in overlaps[:-1])
        assert overlaps[-1] >= stride + 1  # the last patch is pulled back to the edge
    assert all(a.start < b.start for a, b in itertools.pairwise(ys))


@FAST
@given(dim=st.integers(16, 600), step=st.integers(1, 200), over=st.integers(0, 64))
def test_neighbouring_tiles_overlap_by_overlaps(dim, step, over) -> None:
    if step + over > dim:
        return
    ys, _ = tile_axes((dim, dim), strides=step, overlaps=over)
    overlaps = [_overlap(a, b) for a, b in itertools.pairwise(ys)]
    assert all(o == over for o in overlaps[:-1])
    assert all(o >= over for o in overlaps[-1:])


# ---------------------------------------------------------------- chunk arithmetic


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000))
def test_divisors_equal_brute_force(n) -> None:
    assert divisors(n) == [d for d in range(1, n + 1) if n % d == 0]


@FAST
@given(length=st.integers(1, 3000), frame=st.integers(1, 10**6), cap=st.integers(1, 10**8),
       mult=st.integers(0, 200))
def test_time_extent_fits_and_divides(length, frame, cap, mult) -> None:
    t = time_extent(length, frame, cap, multiple_of=mult)
    assert t >= 1
    if t > 1:
        assert t * frame <= cap  # more than one frame only when it fits
    if mult == 0:
        assert length % t == 0
    elif length * frame <= cap:
        assert t == length


@FAST
@given(Y=st.integers(1, 800), X=st.integers(1, 800), item=st.sampled_from([1, 2, 4, 8]),
       length=st.integers(1, 500), cap=st.integers(64, 2**24))
def test_frame_chunks_are_whole_rows_within_the_cap(Y, X, item, length, cap) -> None:
    t, band, cols = frame_chunks((Y, X), item, length, cap)
    assert cols == X and 1 <= band <= Y and length % t == 0
    if band > 1:
        assert t * band * X * item <= cap
    if Y * X * item <= cap:
        assert band == Y  # a frame that fits is never split


@FAST
@given(extent_y=st.integers(20, 160), extent_x=st.integers(20, 160), rf=st.integers(3, 20),
       amp=st.sampled_from([1.0, 1.1, 1.25, 1.5]), area=st.integers(1, 4000))
def test_best_spatial_chunk_is_bounded_and_largest(extent_y, extent_x, rf, amp, area) -> None:
    ys, xs = patch_axes((extent_y, extent_x), rf=rf, stride=rf // 2)
    ay = axis_amplification(ys, extent_y, max_amplification=amp)
    ax = axis_amplification(xs, extent_x, max_amplification=amp)
    (cy, cx), worst = best_spatial_chunk(ay, ax, amp, max_area=area)
    assert worst <= amp + 1e-12 and (cy * cx <= area or (cy, cx) == (1, 1))
    wy = dict(zip(ay.sizes.tolist(), ay.worst.tolist(), strict=True))
    wx = dict(zip(ax.sizes.tolist(), ax.worst.tolist(), strict=True))
    best = max(a * b for a in wy for b in wx if a * b <= area and wy[a] * wx[b] <= amp)
    assert cy * cx == best


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 2000), Y=st.integers(16, 300), X=st.integers(16, 300),
       rf=st.integers(6, 40), nfs=st.integers(1, 300),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "float64"]))
def test_plan_layouts_tile_the_movie_and_round_trip(T, Y, X, rf, nfs, dtype) -> None:
    plan = plan_chunks((T, Y, X), dtype, rf=rf, num_frames_split=nfs)
    assert ChunkPlan.from_dict(plan.to_dict()) == plan
    for layout in (plan.raw, plan.corrected, plan.rechunked):
        if layout is None:
            continue
        assert tuple(layout.shape) == (T, Y, X)
        assert all(1 <= c <= s for c, s in zip(layout.chunks, layout.write_unit, strict=True))
        regions = layout.shard_regions()
        assert sum(math.prod(s.stop - s.start for s in r) for r in regions) == T * Y * X
    blocks = plan.time_blocks
    assert blocks[0][0] == 0 and blocks[-1][1] == T
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))


# ---------------------------------------------------------------- aligned writes


@FAST
@given(data=st.data())
def test_aligned_write_check_accepts_unit_partitions_and_refuses_a_shifted_cut(data) -> None:
    shape = tuple(data.draw(st.integers(4, 60)) for _ in range(3))
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    layout = layout_from_chunks(shape, "uint16", chunks)
    unit = layout.write_unit
    k = data.draw(st.integers(1, max(1, math.ceil(shape[0] / unit[0]))))
    cut = min(shape[0], k * unit[0])
    validate_aligned_writes(layout, [(slice(0, cut),), (slice(cut, shape[0]),)])
    bad = data.draw(st.integers(1, shape[0] - 1))
    if bad % unit[0]:  # a cut inside a write unit: both tasks would write that unit
        with pytest.raises(ChunkAlignmentError):
            validate_aligned_writes(layout, [(slice(0, bad),), (slice(bad, shape[0]),)])


# ---------------------------------------------------------------- scoring


def _brute_matching(n_found, n_true, i, j, cost):
    """(size, least cost) of the best one-to-one matching, by enumeration."""
    best = (0, 0.0)
    for r in range(len(i) + 1):
        for subset in itertools.combinations(range(len(i)), r):
            if len({i[s] for s in subset}) == r == len({j[s] for s in subset}):
                total = sum(cost[s] for s in subset)
                if r > best[0] or (r == best[0] and total < best[1] - 1e-9):
                    best = (r, total)
    return best


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_matching_is_one_to_one_maximal_and_cheapest(data) -> None:
    n_found, n_true = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n_found - 1),
                                         st.integers(0, n_true - 1)),
                               unique=True, max_size=9))
    cost = np.array(data.draw(st.lists(st.integers(0, 9), min_size=len(pairs),
                                       max_size=len(pairs))), dtype=float)
    i = np.array([p[0] for p in pairs], dtype=np.int64)
    j = np.array([p[1] for p in pairs], dtype=np.int64)
    sel = match_pairs(n_found, n_true, i, j, cost)
    assert len(set(i[sel])) == len(sel) == len(set(j[sel]))
    size, total = _brute_matching(n_found, n_true, i.tolist(), j.tolist(), cost.tolist())
    assert len(sel) == size
    assert float(cost[sel].sum()) == pytest.approx(total)


_box = st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(2, 7), st.integers(2, 7))


@settings(max_examples=40, deadline=None)
@given(st.lists(_box, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_scores_do_not_depend_on_component_order(boxes, rnd) -> None:
    masks = np.zeros((len(boxes), 28, 28), dtype=bool)
    for k, (r, c, h, w) in enumerate(boxes):
        masks[k, r:r + h, c:c + w] = True
    order = list(range(len(boxes)))
    rnd.shuffle(order)
    same = score_both(masks, masks)
    shuffled = score_both(masks[order], masks)
    for crit in ("centroid", "iou"):
        assert same[crit].recall == pytest.approx(1.0)  # every ROI matches itself or a twin
        assert shuffled[crit].n_matched == same[crit].n_matched
        assert shuffled[crit].f1 == pytest.approx(same[crit].f1)
