"""The scaling model (benchmarks/scaling_model.py): pure functions on measured numbers."""

from __future__ import annotations

import math
import pathlib
import sys
from dataclasses import replace

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks import scaling_model as sm  # noqa: E402

NO_IO = sm.Assumptions(io_passes=0.0, task_overhead=0.0)
MOVIE = sm.MovieShape(1000, (512, 512))
COSTS = sm.Costs(movie=MOVIE, motion=40.0, patches=100.0, parallel_rest=20.0,
                 client_rest=5.0)


def pipeline_json(one: float = 165.0, two: float = 90.0) -> dict:
    """A suite_pipeline.json as case_pipeline.py writes it (the parts the model reads)."""
    stages = {"convert": 8.0, "motion": 40.0, "cnmf": 116.0, "cnmf.rechunk": 2.0,
              "cnmf.patches": 100.0, "cnmf.merge": 1.0, "cnmf.refine": 10.0,
              "cnmf.evaluate": 2.0}
    runs = {m: [{"seconds": s, "stages": stages}] for m, s in (("1", one), ("2", two))}
    seconds = {m: {"median": s} for m, s in (("serial", 150.0), ("1", one), ("2", two))}
    return {"synthetic": {"shape": [1000, 512, 512], "runs": runs, "seconds": seconds,
                          "settings": ["data.fr=30.0", "patch.rf=32", "patch.stride=10"]}}


def test_fit_offset_exponent_separates_a_fixed_cost():
    x = np.array([200.0, 400.0, 800.0, 1600.0])
    a, k = sm.fit_offset_exponent(x, 3.5 + 0.01 * x)
    assert a == pytest.approx(3.5, abs=0.05) and k == pytest.approx(1.0, abs=0.02)
    assert sm.fit_exponent(x, 3.5 + 0.01 * x) < 0.7  # what the plain slope says
    a, k = sm.fit_offset_exponent(x, 2e-4 * x ** 1.5)
    assert a == pytest.approx(0.0, abs=0.05) and k == pytest.approx(1.5, abs=0.02)
    with pytest.raises(sm.ParameterError, match=">= 3 points"):
        sm.fit_offset_exponent([1.0, 2.0], [1.0, 2.0])


def test_extrapolation_never_assumes_sublinear_growth():
    assert sm.extrapolation_exponent(0.64) == 1.0
    assert sm.extrapolation_exponent(1.2) == 1.2
    assert sm.extrapolation_exponent(None) == 1.0


def test_fit_exponent_recovers_power_laws():
    x = np.array([100, 200, 400, 800])
    assert sm.fit_exponent(x, 3 * x ** 1.5) == pytest.approx(1.5, abs=1e-9)
    assert sm.fit_exponent(x, 7 + 0 * x) == pytest.approx(0.0, abs=1e-9)
    noisy = 2 * x * np.array([1.05, 0.95, 1.02, 0.99])
    assert sm.fit_exponent(x, noisy) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("x, y", [([100], [1.0]), ([5, 5], [1.0, 2.0]), ([1, 2], [1.0, 0.0]),
                                  ([1, 2, 3], [1.0, 2.0])])
def test_fit_exponent_refuses_degenerate_input(x, y):
    with pytest.raises(ValueError, match="distinct positive"):
        sm.fit_exponent(x, y)


def test_task_counts_follow_caiman_geometry():
    counts = sm.task_counts(sm.MovieShape(100_000, (512, 512)),
                            sm.Geometry(rf=25, stride=6, num_frames_split=80))
    assert counts["blocks"] == 1250
    assert counts["patches"] == 144  # CaImAn's grid: 12 x 12 for rf 25, stride 6
    assert 2400 < counts["patch_pixels"] <= 51 * 51


def test_one_worker_on_the_calibration_movie_reproduces_the_costs():
    p = sm.predict(COSTS, MOVIE, 1, assumptions=NO_IO)
    assert p.total == pytest.approx(165.0)
    assert (p.motion, p.patches, p.parallel_rest, p.client_rest) == (40.0, 100.0, 20.0, 5.0)


def test_workers_divide_by_rounds_of_tasks():
    geometry = sm.Geometry()
    counts = sm.task_counts(MOVIE, geometry)  # 12 blocks, 100 patches
    two = sm.predict(COSTS, MOVIE, 2, geometry=geometry, assumptions=NO_IO)
    assert two.motion == pytest.approx(40.0 * math.ceil(counts["blocks"] / 2) / counts["blocks"])
    assert two.patches == pytest.approx(50.0)
    assert two.client_rest == 5.0  # client work is not divided
    many = sm.predict(COSTS, MOVIE, 10_000, geometry=geometry, assumptions=NO_IO)
    assert many.patches == pytest.approx(100.0 / counts["patches"])  # one round, one patch


def test_costs_scale_with_frames_pixels_and_the_exponent():
    double = replace(MOVIE, frames=2000)
    assert sm.predict(COSTS, double, 1, assumptions=NO_IO).total == pytest.approx(330.0)
    steeper = replace(NO_IO, frames_exponent=1.2)
    assert sm.predict(COSTS, double, 1, assumptions=steeper).total == pytest.approx(
        165.0 * 2 ** 1.2)
    wide = sm.MovieShape(1000, (1024, 512))
    assert sm.predict(COSTS, wide, 1, assumptions=NO_IO).client_rest == pytest.approx(10.0)


def test_io_bound_movies_take_at_least_their_io_and_overhead_is_serial():
    slow = sm.Assumptions(io_bandwidth=1e6, worker_io_bandwidth=1e6, io_passes=1.0,
                          task_overhead=0.01)
    p = sm.predict(COSTS, MOVIE, 4, assumptions=slow)
    assert p.io == pytest.approx(MOVIE.nbytes / 1e6)
    assert p.total == pytest.approx(p.io + p.client_rest + p.scheduler)
    counts = sm.task_counts(MOVIE, sm.Geometry())
    assert p.scheduler == pytest.approx(0.01 * (2 * counts["blocks"] + counts["patches"] + 4))
    with pytest.raises(ValueError, match="workers"):
        sm.predict(COSTS, MOVIE, 0)


def test_costs_from_run_puts_unnamed_time_on_the_client():
    stages = pipeline_json()["synthetic"]["runs"]["1"][0]["stages"]
    costs = sm.costs_from_run(stages, MOVIE, total=170.0)
    assert costs.motion == 40.0 and costs.patches == 100.0
    assert costs.parallel_rest == pytest.approx(8.0 + 2.0 + 10.0)
    assert costs.client_rest == pytest.approx(1.0 + 2.0 + 1.0 + 6.0)  # + cnmf save, + summary


def test_calibrate_check_and_render_from_the_json(tmp_path):
    dview = {"dask": {"noop_chunksize_1": {"ms_per_task": 2.0}}}
    costs, geometry, assumptions, measured = sm.calibrate(pipeline_json(), dview)
    assert (geometry.rf, geometry.stride, assumptions.task_overhead) == (32, 10, 0.002)
    assert measured == {"1": 165.0, "2": 90.0}
    ratios = sm.check(costs, geometry, assumptions, measured)
    assert ratios["1"] == pytest.approx(1.0, abs=0.01)  # overhead of ~0.2 s only
    assert 0.9 < ratios["2"] < 1.1
    text = sm.render(pipeline_json(), dview)
    assert "| 512 |" in text and "105 GB" in text and "1250 motion blocks" in text
    doc = tmp_path / "scaling.md"
    doc.write_text(f"intro\n{sm.BEGIN}\nold\n{sm.END}\noutro\n")
    sm.replace_section(doc, text)
    assert doc.read_text().startswith("intro\n") and "old" not in doc.read_text()
    assert doc.read_text().endswith(f"{sm.END}\noutro\n")
