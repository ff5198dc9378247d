"""benchmarks/table.py: the README generated from the suite's JSON, PASS / MISS per target."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks import table  # noqa: E402

MACHINE = {"time": "2026-11-21T20:00:00+0000", "cpus_usable": 2, "memory_usable": 24 * 2**30,
           "load_average": [3.0, 2.0, 1.0], "versions": {"numpy": "2.4.6", "dask": None}}


def stats(*values: float) -> dict:
    ordered = sorted(values)
    return {"min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1],
            "n": len(values), "values": list(values)}


def pipeline(speedup_nf: float, speedup_synth: float) -> dict:
    movie = {"shape": [600, 256, 256], "seconds": {"serial": stats(60.0), "2": stats(30.0)},
             "runs": {"serial": [{"scores": {"centroid": {"f1": 0.31}}}], "2": [{}]},
             "ratios": {"speedup_2w": speedup_nf}}
    synth = {**movie, "ratios": {"speedup_2w": speedup_synth}}
    return {"machine": MACHINE, "load_before": [5.0, 4.0, 3.0], "neurofinder": movie,
            "synthetic": synth, "targets": {"speedup_2w_min": 1.8}}


def memory(ratio: float) -> dict:
    return {"machine": MACHINE, "memory_limit": "2GB", "lengths": [1, 4, 16],
            "runs": [{"movie": {"frames": f}, "seconds": 10.0 * k} for k, f in
                     ((1, 250), (4, 1000), (16, 4000))],
            "peak_worker_rss": [400 * 2**20, 410 * 2**20, 400 * 2**20 * ratio],
            "peak_client_rss": [2**29] * 3, "ratios": {"worker_peak_16x_over_1x": ratio},
            "targets": {"worker_peak_16x_over_1x_max": 1.10}}


def growth(exponent: float) -> dict:
    run = {"movie": {"frames": 500, "dims": [256, 256]}, "seconds": 20.0}
    frames_runs = [{"movie": {"frames": t, "dims": [128, 128]}, "seconds": 3.5 + 0.01 * t}
                   for t in (200, 400, 800, 1600)]  # a fixed cost and a linear cost
    return {"machine": MACHINE, "frames_runs": frames_runs, "fov_runs": [run],
            "exponent_vs_frames": {"total": exponent, "motion": 1.0},
            "exponent_vs_pixels": {"total": 1.2}, "targets": {"exponent_vs_frames": [0.9, 1.1]}}


def dview() -> dict:
    runner = {"noop_default_chunks": {"ms_per_task": 0.1},
              "noop_chunksize_1": {"ms_per_task": 2.0}, "mc_block": {"median": 5.0}}
    unqueued = {**runner, "noop_chunksize_1": {"ms_per_task": 0.9}}
    return {"machine": MACHINE, "pool": runner, "dask": runner, "dask_no_queuing": unqueued,
            "ratios": {"mc_block_dask_over_pool": 0.98},
            "targets": {"ms_per_task_max": 1.0, "mc_block_dask_over_pool_max": 1.05}}


def verdicts(text: str) -> dict[str, str]:
    """Target name -> verdict from the README's targets table."""
    body = text.split("## Targets")[1]
    rows = [line.strip("|").split("|") for line in body.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): cells[-1].strip() for cells in rows[1:]}


def test_target_verdicts():
    assert table.at_least("a", 1.8, 1.8).verdict == "PASS"
    assert table.at_least("a", 1.79, 1.8).verdict == "MISS"
    assert table.at_most("b", 1.11, 1.10).verdict == "MISS"
    assert table.within("c", 0.95, 0.9, 1.1).verdict == "PASS"
    assert table.within("c", 1.2, 0.9, 1.1).verdict == "MISS"
    assert table.at_most("d", None, 1.0).verdict == "n/a"


def test_render_marks_each_target_from_the_measured_ratios():
    text = table.render({"pipeline": pipeline(1.2, 1.9), "memory": memory(1.25),
                         "growth": growth(1.04), "dview": dview(),
                         "caiman": {"skipped": "no CaImAn Python (none given)"},
                         "suite2p": {"error": "exit 1: boom"}})
    v = verdicts(text)
    assert v["neurofinder: 2 workers / serial speedup"] == "MISS"
    assert v["synthetic: 2 workers / serial speedup"] == "PASS"
    assert v["peak worker RSS 16x / 1x (limit 2GB)"] == "MISS"
    assert v["time exponent vs frames"] == "PASS"
    assert v["time exponent vs frames, fixed cost fitted"] == "PASS"  # a + b * frames
    assert "fixed cost a = 3.50 s, k = 1.00" in text
    assert v["dask ms per no-op task (chunksize 1)"] == "MISS"
    assert v["dask ms per no-op task (chunksize 1), queuing off"] == "PASS"
    assert v["dview / Pool, motion block"] == "PASS"
    assert "Skipped: no CaImAn Python (none given)" in text
    assert "Skipped: failed: exit 1: boom" in text
    assert "| 1.25 | <= 1.1 | MISS |" in text
    assert "load 1/5/15 min before 5.0/4.0/3.0, after 3.0/2.0/1.0" in text
    assert "numpy 2.4.6" in text and "dask None" not in text


def test_a_missing_or_malformed_case_never_passes():
    broken = memory(1.0)
    del broken["ratios"]
    text = table.render({"memory": broken})
    assert "Malformed result (KeyError" in text
    assert "PASS" not in text and "Skipped: not run" in text


def test_main_writes_the_readme_from_the_json_only(tmp_path):
    (tmp_path / "suite_growth.json").write_text(json.dumps({**growth(0.7), "quick": True}))
    (tmp_path / "suite_memory.json").write_text(json.dumps(memory(1.02)))
    (tmp_path / "other.json").write_text("{not json")  # not a suite file: ignored
    out = tmp_path / "README.md"
    table.main(["--results", str(tmp_path), "--out", str(out)])
    v = verdicts(out.read_text())
    assert out.read_text().count("_quick smoke run (small movies), 2026-11-21") == 1
    assert v == {"peak worker RSS 16x / 1x (limit 2GB)": "PASS",
                 "time exponent vs frames": "MISS",
                 "time exponent vs frames, fixed cost fitted": "PASS"}


@pytest.mark.parametrize("value, text", [(None, "-"), (0.123456, "0.123"), (12345.6, "12346"),
                                         ("x", "x")])
def test_format(value, text):
    assert table._fmt(value) == text


def test_caiman_and_suite2p_sections():
    caiman = {"machine": MACHINE, "runs": {
        "caiman_pool": {"seconds": 100.0, "f1": 0.30, "stages": {"motion": 10.0}},
        "ours": {"seconds": 80.0, "f1": 0.28}},
        "ratios": {"ours_over_caiman": 0.8, "f1_ours_minus_caiman": -0.02,
                   "dview_over_pool": {"motion": 0.9, "fit": 1.3}},
        "dview_skipped": "import caiman_dask fails"}
    suite2p = {"machine": MACHINE, "runs": {"suite2p 1.1.0": {
        "seconds": 50.0, "n_rois": 200, "scores": {"centroid": {"f1": 0.22},
                                                   "iou": {"f1": 0.05}}}}}
    text = table.render({"caiman": caiman, "suite2p": suite2p})
    v = verdicts(text)
    assert v == {"ours / CaImAn (Pool) seconds": "PASS", "F1 ours - CaImAn": "MISS",
                 "our dview / Pool, stage motion": "PASS",
                 "our dview / Pool, stage fit": "MISS"}
    assert "| caiman_dview | skipped: import caiman_dask fails | - |" in text
    assert "| suite2p 1.1.0 | 50 | 200 | 0.22 | 0.05 |" in text


def test_the_two_core_ceiling_is_measured_and_shown_beside_the_speedups():
    from benchmarks.ceiling import two_core_ceiling

    ceiling = two_core_ceiling({"matmul": 1}, rounds=1)  # two spawned processes at once
    kernel = ceiling["matmul"]
    assert len(kernel["alone_s"]) == len(kernel["two_at_once_s"]) == 1
    assert kernel["two_core_speedup"] == pytest.approx(
        2 * kernel["alone_s"][0] / kernel["two_at_once_s"][0])
    text = table.render({"pipeline": {**pipeline(1.5, 1.6), "two_core_ceiling": ceiling}})
    section = text.split("## 1.")[1].split("## ")[0]
    assert f"matmul {table._fmt(kernel['two_core_speedup'])}x" in section
