"""CaImAn's grids: CNMF patches, NoRMCorre tiles, motion-correction time blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caiman_dask.errors import ParameterError
from caiman_dask.geometry import (
    patch_axes,
    patch_grid,
    plan_time_blocks,
    resolve_stride,
    tile_axes,
    tile_grid,
    time_blocks,
)

FAST = settings(max_examples=150, deadline=None)


def reference_patch_pixels(dim: int, rf: int, stride: int, border_pix: int) -> list[set[int]]:
    """CaImAn's per-axis patch pixels, from caiman-facts.md, enumerated pixel by pixel."""
    usable = dim - 2 * border_pix
    centres = list(range(rf, usable - rf, 2 * rf - stride)) + [usable - rf]
    return [
        {p + border_pix for p in range(c - rf, c + rf + 1) if 0 <= p < usable} for c in centres
    ]


def as_sets(axis: tuple[slice, ...]) -> list[set[int]]:
    return [set(range(s.start, s.stop)) for s in axis]


# ---------------------------------------------------------------- known grids


def test_patch_grid_512_rf25_stride6_matches_caiman_facts() -> None:
    ys, xs = patch_axes((512, 512), rf=25, stride=6)
    starts = [0, 44, 88, 132, 176, 220, 264, 308, 352, 396, 440, 462]
    assert [s.start for s in ys] == starts and [s.start for s in xs] == starts
    assert [s.stop - s.start for s in ys] == [51] * 11 + [50]  # the last loses D itself
    grid = patch_grid((512, 512), rf=25, stride=6)
    assert len(grid) == 144
    assert grid[1].slices == (slice(0, 51), slice(44, 95))  # row-major: x varies fastest
    assert grid[12].slices == (slice(44, 95), slice(0, 51))
    assert [p.index for p in grid] == list(range(144))
    assert grid[-1].shape == (50, 50)


def test_patch_grid_border_pix_offsets_the_usable_extent() -> None:
    ys, _ = patch_axes((512, 300), rf=25, stride=6, border_pix=10)
    assert ys[0].start == 10 and ys[-1].stop == 502
    assert as_sets(ys) == reference_patch_pixels(512, 25, 6, 10)


def test_default_stride_is_int_of_0_2_rf_per_axis() -> None:
    assert resolve_stride(25) == (5, 5)
    assert resolve_stride((25, 12)) == (5, 2)
    ys, xs = patch_axes((200, 100), rf=(25, 12), stride=None)
    assert as_sets(ys) == reference_patch_pixels(200, 25, 5, 0)
    assert as_sets(xs) == reference_patch_pixels(100, 12, 2, 0)


@pytest.mark.parametrize("extent", [1, 20, 49, 50])
def test_extent_at_most_2rf_gives_one_patch_spanning_it(extent: int) -> None:
    ys, _ = patch_axes((extent, 200), rf=25, stride=6)
    assert ys == (slice(0, extent),)


def test_extent_2rf_plus_1_gives_caimans_two_near_duplicate_patches() -> None:
    ys, _ = patch_axes((51, 200), rf=25, stride=6)
    assert ys == (slice(0, 51), slice(1, 51))


@FAST
@given(
    dim=st.integers(16, 700),
    rf=st.integers(1, 120),
    stride_frac=st.floats(0, 0.999),
    border_frac=st.floats(0, 0.49),
)
def test_patches_inside_cover_and_match_reference(
    dim: int, rf: int, stride_frac: float, border_frac: float
) -> None:
    stride = int(stride_frac * 2 * rf)
    border = int(border_frac * dim) if 2 * int(border_frac * dim) < dim else 0
    ys, xs = patch_axes((dim, dim), rf=rf, stride=stride, border_pix=border)
    assert xs == ys
    pixels = as_sets(ys)
    assert pixels == reference_patch_pixels(dim, rf, stride, border)
    assert all(border <= s.start < s.stop <= dim - border for s in ys)
    assert set().union(*pixels) == set(range(border, dim - border))
    assert all(s.stop - s.start <= 2 * rf + 1 for s in ys)


# ---------------------------------------------------------------- tiles


def test_tile_grid_512_strides96_overlaps32() -> None:
    ys, xs = tile_axes((512, 512), strides=96, overlaps=32)
    assert [s.start for s in ys] == [0, 96, 192, 288, 384]
    tiles = tile_grid((512, 512), strides=(96, 96), overlaps=(32, 32))
    assert len(tiles) == 25 and {t.shape for t in tiles} == {(128, 128)}
    assert tiles[1].slices == (slice(0, 128), slice(96, 224))


def test_tile_window_equal_to_frame_gives_one_tile() -> None:
    assert tile_axes((128, 200), strides=(96, 96), overlaps=(32, 32))[0] == (slice(0, 128),)


@FAST
@given(dim=st.integers(16, 700), stride=st.integers(1, 300), overlap=st.integers(0, 100))
def test_tiles_inside_and_cover(dim: int, stride: int, overlap: int) -> None:
    if stride + overlap > dim:
        with pytest.raises(ParameterError, match="motion.strides"):
            tile_axes((dim, dim), strides=stride, overlaps=overlap)
        return
    ys, _ = tile_axes((dim, dim), strides=stride, overlaps=overlap)
    assert all(0 <= s.start and s.stop <= dim and s.stop - s.start == stride + overlap
               for s in ys)
    assert set().union(*as_sets(ys)) == set(range(dim))


# ---------------------------------------------------------------- time blocks


@FAST
@given(n_frames=st.integers(1, 5000), nfs=st.integers(1, 600))
def test_time_blocks_equal_np_array_split(n_frames: int, nfs: int) -> None:
    blocks = time_blocks(n_frames, num_frames_split=nfs)
    expected = np.array_split(np.arange(n_frames), max(n_frames // nfs, 1))
    assert [list(range(n_frames)[b]) for b in blocks] == [list(e) for e in expected]


@FAST
@given(n_frames=st.integers(1, 5000), nfs=st.integers(1, 600), mult=st.integers(1, 40))
def test_plan_time_blocks_aligned_same_count(n_frames: int, nfs: int, mult: int) -> None:
    blocks = plan_time_blocks(n_frames, num_frames_split=nfs, multiple_of=mult)
    length = blocks[0][1] - blocks[0][0]
    assert blocks[0][0] == 0 and blocks[-1][1] == n_frames
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert all(a % length == 0 for a, _ in blocks)
    assert all(b - a == length for a, b in blocks[:-1])
    assert length <= blocks[-1][1] - blocks[-1][0] < 2 * length
    if mult == 1:
        assert len(blocks) == len(time_blocks(n_frames, num_frames_split=nfs))
    elif length < n_frames:
        assert length % mult == 0


def test_plan_time_blocks_keeps_remainder_in_last_block() -> None:
    blocks = plan_time_blocks(3050, num_frames_split=100)
    assert len(blocks) == 30 and blocks[-1] == (2900, 3050) and blocks[0] == (0, 100)
    assert plan_time_blocks(50, num_frames_split=80) == ((0, 50),)


# ---------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rf": 0}, "patch.rf"),
        ({"rf": -3}, "patch.rf"),
        ({"rf": "25"}, "patch.rf"),
        ({"rf": (25, 25, 25)}, "patch.rf"),
        ({"rf": 25, "stride": -1}, "patch.stride"),
        ({"rf": 25, "stride": 50}, "patch.stride"),
        ({"rf": (25, 10), "stride": (6, 20)}, "patch.stride"),
        ({"rf": 25, "border_pix": 256}, "patch.border_pix"),
        ({"rf": 25, "border_pix": -1}, "patch.border_pix"),
    ],
)
def test_bad_patch_parameters_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError, match=name.replace(".", r"\.")):
        patch_grid((512, 512), **kwargs)


def test_bad_stride_message_says_what_to_change() -> None:
    with pytest.raises(ParameterError, match=r"use a stride below 50.*int\(0\.2\*rf\)=5"):
        patch_grid((512, 512), rf=25, stride=50)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"strides": 0, "overlaps": 32}, "motion.strides"),
        ({"strides": 96, "overlaps": -1}, "motion.overlaps"),
        ({"strides": 500, "overlaps": 32}, "motion.strides + motion.overlaps"),
    ],
)
def test_bad_tile_parameters_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError, match=name.replace(".", r"\.").replace("+", r"\+")):
        tile_grid((512, 512), **kwargs)


def test_bad_time_block_parameters() -> None:
    with pytest.raises(ParameterError, match="motion.num_frames_split"):
        time_blocks(100, num_frames_split=0)
    with pytest.raises(ParameterError, match="n_frames"):
        time_blocks(0, num_frames_split=80)
    with pytest.raises(ParameterError, match="motion.num_frames_split"):
        plan_time_blocks(100, num_frames_split=0)


def test_bad_frame_dims() -> None:
    with pytest.raises(ParameterError, match="frame dims"):
        patch_grid((512,), rf=25)
    with pytest.raises(ParameterError, match="frame dims"):
        tile_grid((0, 512), strides=96, overlaps=32)
