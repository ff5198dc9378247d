"""The chunk plan: layouts, read amplification, aligned writes, report and CLI."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import pathlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from caiman_dask import alignment
from caiman_dask.cli import plan as cli_plan
from caiman_dask.errors import ChunkAlignmentError, ParameterError
from caiman_dask.geometry import time_blocks
from caiman_dask.plan import (
    ChunkPlan,
    StoreLayout,
    layout_from_chunks,
    plan_chunks,
    read_amplification,
    report,
    validate_aligned_writes,
)
from caiman_dask.plan_report import INIT_COPIES, INIT_EXTRA

MIB = 1 << 20


def brute_force_cost(layout: StoreLayout, region: tuple[slice, ...]) -> tuple[int, int]:
    """(chunks touched, elements in them clipped to the array), chunk by chunk."""
    per_axis = [
        [k for k in range(math.ceil(n / c)) if k * c < sl.stop and (k + 1) * c > sl.start]
        for sl, c, n in zip(region, layout.chunks, layout.shape, strict=True)
    ]
    touched = list(itertools.product(*per_axis))
    volume = sum(
        math.prod(min((k + 1) * c, n) - k * c for k, c, n in zip(idx, layout.chunks, layout.shape))
        for idx in touched
    )
    return len(touched), volume


def assert_plan_consistent(plan: ChunkPlan) -> None:
    layouts = [plan.raw, plan.corrected] + ([plan.rechunked] if plan.rechunked else [])
    for layout in layouts:
        if layout.shards is not None:
            assert all(s % c == 0 for s, c in zip(layout.shards, layout.chunks))
    validate_aligned_writes(plan.raw, plan.block_regions())
    validate_aligned_writes(plan.corrected, plan.block_regions())
    if plan.rechunked is not None:
        validate_aligned_writes(plan.rechunked, plan.rechunk_regions())
    assert report(plan).write_conflicts == ()


# ---------------------------------------------------------------- the target cases


def test_target_512x512x3000_uint16_rf25_stride6_nfs100() -> None:
    plan = plan_chunks((3000, 512, 512), "uint16", rf=25, stride=6, num_frames_split=100)
    rep = report(plan)
    mc, patch = rep.pattern("MC read"), rep.pattern("CNMF patch read")
    assert mc.store == "raw" and mc.tasks == 30 and mc.amp_max == 1.0
    assert patch.tasks == 144 and patch.amp_max <= 1.25
    assert patch.amp_max == pytest.approx((55 / 51) ** 2)  # 11 px chunks, aligned to step 44
    assert plan.needs_rechunk and plan.rechunked.chunks == (2200, 11, 11)  # >= 1 MiB, not all frames
    assert rep.pattern("rechunk read").amp_max == 1.0  # each rechunk task reads its own chunks
    lo, hi = plan.chunk_bytes
    for _, layout in rep.stores():
        assert lo <= layout.chunk_bytes <= hi
        assert layout.n_files <= 64 and layout.shard_bytes <= 256 * MIB
    assert_plan_consistent(plan)


def test_neurofinder_like_600x256x256_rf25_stride10() -> None:
    plan = plan_chunks((600, 256, 256), "uint16", rf=25, stride=10, num_frames_split=100)
    rep = report(plan)
    assert rep.pattern("MC read").amp_max == 1.0
    assert rep.pattern("CNMF patch read").amp_max <= 1.25
    assert rep.pattern("CNMF patch read").tasks == 49
    assert_plan_consistent(plan)


def test_real_neurofinder_movie_header(neurofinder_tif: pathlib.Path) -> None:
    import tifffile

    with tifffile.TiffFile(neurofinder_tif) as tif:
        shape, dtype = tif.series[0].shape, tif.series[0].dtype
    plan = plan_chunks(shape, dtype, rf=25, stride=10, num_frames_split=100)
    assert plan.raw.shape == (600, 256, 256) and plan.raw.dtype == "uint16"
    assert report(plan).pattern("CNMF patch read").amp_max <= 1.25


def test_uneven_frames_keep_caiman_block_count_and_aligned_shards() -> None:
    plan = plan_chunks((3050, 512, 512), "uint16", rf=25, stride=6, num_frames_split=100)
    assert len(plan.time_blocks) == len(time_blocks(3050, num_frames_split=100)) == 30
    assert plan.time_blocks[-1] == (2900, 3050)
    assert plan.corrected.shards[0] == 100
    assert_plan_consistent(plan)


def test_rechunk_can_be_forced_or_refused() -> None:
    shape = (3000, 512, 512)
    direct = plan_chunks(shape, "uint16", rf=25, stride=6, num_frames_split=100, rechunk=False)
    assert direct.rechunked is None and direct.corrected.chunks == (100, 11, 11)
    assert report(direct).pattern("CNMF patch read").store == "corrected"
    assert report(direct).pattern("CNMF patch read").amp_max <= 1.25
    assert any("below" in n for n in direct.notes)
    big = plan_chunks(shape, "uint16", rf=25, stride=6, num_frames_split=100,
                      chunk_bytes=(16 * 1024, 16 * MIB))
    assert big.rechunked is None  # 47 KiB chunks reach a 16 KiB window: no rechunk
    assert_plan_consistent(direct)


# ---------------------------------------------------------------- properties

PLAN_CASES = dict(
    T=st.integers(1, 4000), Y=st.integers(16, 700), X=st.integers(16, 700),
    rf=st.integers(8, 80), stride_frac=st.floats(0, 1), border_frac=st.floats(0, 0.3),
    nfs=st.integers(1, 500), dtype=st.sampled_from(["uint8", "uint16", "int16", "float32"]),
    seed=st.integers(0, 2**31),
)


@settings(max_examples=40, deadline=None)
@given(**PLAN_CASES)
def test_plan_properties(T, Y, X, rf, stride_frac, border_frac, nfs, dtype, seed) -> None:
    stride = int(stride_frac * rf)
    border = int(border_frac * min(Y, X))
    plan = plan_chunks((T, Y, X), dtype, rf=rf, stride=stride, border_pix=border,
                       num_frames_split=nfs, strides=min(Y, X) // 2, overlaps=0)
    assert_plan_consistent(plan)
    rep = report(plan)
    patch = rep.pattern("CNMF patch read")
    assert patch.amp_max <= plan.max_amplification + 1e-12
    hi = plan.chunk_bytes[1]
    assert plan.raw.chunk_bytes <= hi and plan.corrected.chunk_bytes <= hi
    for _, layout in rep.stores():
        assert layout.shard_bytes <= 256 * MIB
    # the report's figures equal a chunk-by-chunk count, on a sample of patches
    rng = np.random.default_rng(seed)
    patches = plan.patches()
    layout = plan.cnmf_layout
    worst = 0.0
    for p in [patches[0], patches[-1], *rng.choice(patches, 5)]:
        region = (slice(0, T), p.y, p.x)
        cost = read_amplification(layout, region)
        n, volume = brute_force_cost(layout, region)
        assert (cost.chunks, cost.bytes_read) == (n, volume * layout.itemsize)
        worst = max(worst, cost.amplification)
    assert worst <= patch.amp_max + 1e-12


@settings(max_examples=200, deadline=None)
@given(data=st.data(), ndim=st.integers(1, 3))
def test_read_amplification_equals_brute_force(data: st.DataObject, ndim: int) -> None:
    shape = tuple(data.draw(st.integers(1, 60)) for _ in range(ndim))
    chunks = tuple(data.draw(st.integers(1, n + 5)) for n in shape)
    region = []
    for n in shape:
        a = data.draw(st.integers(0, n - 1))
        region.append(slice(a, data.draw(st.integers(a + 1, n))))
    layout = layout_from_chunks(shape, "float32", chunks)
    cost = read_amplification(layout, tuple(region))
    n, volume = brute_force_cost(layout, tuple(region))
    assert cost.chunks == n and cost.bytes_read == volume * 4
    assert cost.bytes_needed == math.prod(s.stop - s.start for s in region) * 4
    assert cost.amplification >= 1.0


# ---------------------------------------------------------------- layouts and alignment


def test_store_layout_sizes_and_dict_round_trip() -> None:
    layout = StoreLayout((3000, 512, 512), "uint16", (25, 512, 512), (100, 512, 512))
    assert layout.chunk_bytes == 25 * 512 * 512 * 2 and layout.shard_bytes == 4 * layout.chunk_bytes
    assert layout.n_files == 30 and layout.n_chunks == 120
    assert StoreLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    with pytest.raises(ParameterError, match="dtype"):
        StoreLayout((10, 10), "nonsense", (5, 5))
    with pytest.raises(ParameterError, match=r"multiple of chunks.*shards=\(100, 512, 512\)"):
        StoreLayout((3000, 512, 512), "uint16", (25, 512, 512), (90, 512, 512))


def test_user_chunk_tuple_accepted_and_validated() -> None:
    layout = layout_from_chunks((3000, 512, 512), "uint16", (100, None, -1))
    assert layout.chunks == (100, 512, 512) and layout.shards is None
    assert layout_from_chunks((10, 64, 64), "uint16", (50, 64, 64)).chunks == (10, 64, 64)
    for bad in [(100, 0, 512), (100, 512), (100, 2.5, 512), ("a", 512, 512)]:
        with pytest.raises(ParameterError, match="chunk"):
            layout_from_chunks((3000, 512, 512), "uint16", bad)
    blocks = [(slice(b.start, b.stop),) for b in time_blocks(3050, num_frames_split=100)]
    with pytest.raises(ChunkAlignmentError, match="both touch chunk"):
        layout_from_chunks((3050, 512, 512), "uint16", (100, 512, 512), write_regions=blocks)


def test_validate_aligned_writes_explains_the_fix() -> None:
    layout = StoreLayout((3000, 64, 64), "float32", (50, 64, 64), (150, 64, 64))
    blocks = [(slice(a, a + 100),) for a in range(0, 3000, 100)]
    with pytest.raises(ChunkAlignmentError) as info:
        validate_aligned_writes(layout, blocks, name="corrected")
    message = str(info.value)
    assert "regions 0 [0:100, 0:64, 0:64] and 1 [100:200, 0:64, 0:64]" in message
    assert "shard (0, 0, 0)" in message and "divides 100" in message
    validate_aligned_writes(StoreLayout((3000, 64, 64), "float32", (50, 64, 64), (100, 64, 64)),
                            blocks)
    validate_aligned_writes(layout, [(slice(0, 3000), slice(0, 32))])  # one writer: fine
    with pytest.raises(ChunkAlignmentError, match="overlap"):
        validate_aligned_writes(layout, [(slice(0, 150),), (slice(100, 300),)])
    with pytest.raises(ChunkAlignmentError, match="axis 2"):
        validate_aligned_writes(layout, [(slice(0, 150), slice(0, 64), slice(0, 30)),
                                         (slice(0, 150), slice(0, 64), slice(30, 64))])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_conflict_detection_methods_agree_with_brute_force(data: st.DataObject) -> None:
    shape = (data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40)))
    unit = (data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)))
    regions = []
    for _ in range(data.draw(st.integers(1, 6))):
        region = []
        for n in shape:
            a = data.draw(st.integers(0, n - 1))
            region.append(slice(a, data.draw(st.integers(a + 1, n))))
        regions.append(tuple(region))
    layout = StoreLayout(shape, "uint8", unit)
    boxes = [alignment._unit_box(r, unit) for r in regions]
    units = [set(itertools.product(*b)) for b in boxes]
    expected = any(units[i] & units[j] for i in range(len(units)) for j in range(i))
    assert (alignment._first_conflict(boxes) is not None) == expected
    assert (alignment._first_conflict_sweep(boxes) is not None) == expected
    if expected:
        with pytest.raises(ChunkAlignmentError):
            validate_aligned_writes(layout, regions)
    else:
        validate_aligned_writes(layout, regions)


def test_plan_dict_is_json_safe_and_round_trips() -> None:
    plan = plan_chunks((3050, 256, 200), "int16", rf=(20, 15), stride=None, border_pix=3,
                       num_frames_split=90, strides=(64, 48), overlaps=(16, 16))
    text = json.dumps(plan.to_dict())
    assert ChunkPlan.from_dict(json.loads(text)) == plan
    with pytest.raises(ParameterError, match="format"):
        ChunkPlan.from_dict({"raw": {}})
    broken = json.loads(text)
    del broken["raw"]["chunks"]
    with pytest.raises(ParameterError, match="malformed"):
        ChunkPlan.from_dict(broken)


def test_planned_stores_accept_parallel_block_writes(tmp_path: pathlib.Path) -> None:
    """Real zarr: write every MC block from its own thread, then read patches back."""
    plan = plan_chunks((330, 96, 80), "uint16", rf=12, stride=4, num_frames_split=40,
                       strides=(48, 48), overlaps=(16, 16), rechunk=False)
    movie = np.random.default_rng(0).random(plan.corrected.shape, dtype=np.float32)
    dest = zarr.create_array(tmp_path / "corrected.zarr", **plan.corrected.zarr_kwargs())

    def write(block: tuple[int, int]) -> None:
        dest[block[0]:block[1]] = movie[block[0]:block[1]]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, plan.time_blocks))
    assert np.array_equal(dest[:], movie)
    files = [f for f in (tmp_path / "corrected.zarr").rglob("*") if f.name != "zarr.json"]
    assert len([f for f in files if f.is_file()]) == plan.corrected.n_files
    patch = plan.patches()[-1]
    assert np.array_equal(dest[:, patch.y, patch.x], movie[:, patch.y, patch.x])


# ---------------------------------------------------------------- bad parameters


def test_tiles_larger_than_the_frame_only_matter_to_pw_rigid() -> None:
    plan = plan_chunks((100, 96, 96), "uint16", rf=16, strides=(96, 96), overlaps=(32, 32))
    assert "none fit the frame (rigid only)" in report(plan).format()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rf": 0}, "rf"),
        ({"rf": 25, "stride": 50}, "stride"),
        ({"rf": 25, "stride": -2}, "stride"),
        ({"rf": 25, "border_pix": 300}, "border_pix"),
        ({"rf": 25, "num_frames_split": 0}, "num_frames_split"),
        ({"rf": 25, "strides": (0, 96)}, "motion.strides"),
        ({"rf": 25, "overlaps": (-1, 32)}, "motion.overlaps"),
        ({"rf": 25, "chunk_bytes": (16 * MIB, MIB)}, "chunk_bytes"),
        ({"rf": 25, "max_amplification": 0.5}, "max_amplification"),
    ],
)
def test_plan_bad_parameters_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError, match=name):
        plan_chunks((3000, 512, 512), "uint16", **kwargs)


@pytest.mark.parametrize(("shape", "dtype"), [((3000, 512), "uint16"), ((10, 4, 64, 64), "uint16"),
                                              ((3000, 0, 512), "uint16"),
                                              ((3000, 512, 512), "complex64")])
def test_plan_bad_shape_or_dtype(shape: tuple, dtype: str) -> None:
    with pytest.raises(ParameterError, match="shape|dtype"):
        plan_chunks(shape, dtype, rf=25)


# ---------------------------------------------------------------- report and CLI


def test_report_memory_and_text() -> None:
    plan = plan_chunks((3000, 512, 512), "uint16", rf=25, stride=6, num_frames_split=100)
    rep = report(plan)
    patch = rep.pattern("CNMF patch read")
    # the largest phase of a patch task: its initialisation on 2000 averaged frames
    assert patch.memory_max == INIT_COPIES * 2000 * 51 * 51 * 4 + INIT_EXTRA
    mc = rep.pattern("MC read")
    assert mc.memory_max > 100 * 512 * 512 * (2 + 4 + 4)
    # 50 evenly spaced frames each decode one whole raw chunk of 25 frames
    assert rep.template.chunks == 50
    assert rep.template.bytes_read == 50 * plan.raw.chunk_bytes
    assert rep.template.bytes_needed == 50 * 512 * 512 * 2
    text = rep.format()
    for expected in ["12 x 12 = 144 patches", "0 44 88 132", "(2200, 11, 11)",
                     "CNMF patch read", "rechunk", "files"]:
        assert expected in text
    assert json.loads(json.dumps(rep.to_dict()))["files"]["rechunked"] == 64  # 2 x 32 shards


def plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caiman-dask")
    cli_plan.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_plan_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = plan_parser().parse_args(
        "plan --shape 3000 512 512 --rf 25 --stride 6 --num-frames-split 100".split())
    assert cli_plan.run(args) == 0
    out = capsys.readouterr().out
    assert "12 x 12 = 144 patches" in out and "1.163" in out
    args = plan_parser().parse_args(
        "plan --shape 600 256 256 --rf 25 --stride 10 --num-frames-split 100 --json".split())
    assert args.run(args) == 0
    data = json.loads(capsys.readouterr().out)
    patch = next(p for p in data["patterns"] if p["pattern"] == "CNMF patch read")
    assert patch["amp_max"] <= 1.25 and data["plan"]["raw"]["shape"] == [600, 256, 256]


def test_cli_plan_input_movie_or_clear_error(neurofinder_tif: pathlib.Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = plan_parser().parse_args(["plan", str(neurofinder_tif), "--rf", "25", "--json"])
    if importlib.util.find_spec("caiman_dask.movie") is None:
        with pytest.raises(ParameterError, match="--shape"):
            cli_plan.run(args)
        return
    assert cli_plan.run(args) == 0
    assert json.loads(capsys.readouterr().out)["plan"]["raw"]["shape"] == [600, 256, 256]


def test_cli_plan_bad_arguments() -> None:
    with pytest.raises(ParameterError, match="either"):
        cli_plan.run(plan_parser().parse_args("plan --rf 25".split()))
    with pytest.raises(ParameterError, match="--rf"):
        cli_plan.run(plan_parser().parse_args("plan --shape 10 64 64 --rf 1 2 3".split()))
    with pytest.raises(ParameterError, match="stride"):
        cli_plan.run(plan_parser().parse_args("plan --shape 10 64 64 --rf 8 --stride 16".split()))
