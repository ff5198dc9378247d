"""Runs at the same time on one machine: separate OUTDIRs never meet, a shared one is refused.

Each run is a real ``caiman-dask run`` process; every process gets the same private
``TMPDIR``, so temporary files either run leaves behind (or shares) would show there.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_bad_inputs import snapshot

from caiman_dask.demo import DEMO_PARAMS, make_demo_movie
from caiman_dask.results import load_estimates

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concurrency")
    demo = make_demo_movie(folder / "input", dims=(48, 48), n_frames=120, n_neurons=5, seed=4)
    params = folder / "params.json"
    params.write_text(json.dumps(DEMO_PARAMS))
    return demo.path, params, folder


def _start(movie: pathlib.Path, params: pathlib.Path, outdir: pathlib.Path,
           tmpdir: pathlib.Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "caiman_dask", "run", str(movie), "-o", str(outdir),
               "--params", str(params), "--backend", "single", "--no-report"]
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"a run hung for {timeout} s")
    return proc.returncode, err


def test_two_runs_with_their_own_outdirs_never_touch_each_other(job, tmp_path) -> None:
    movie, params, _ = job
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    before = snapshot(movie.parent.parent, tmp_path)
    procs = [_start(movie, params, out, tmpdir) for out in (a, b)]
    results = [_finish(p) for p in procs]
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    assert snapshot(movie.parent.parent, tmp_path) == before  # inputs untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "tmp"]
    assert list(tmpdir.iterdir()) == []  # no temporary file left behind, none shared
    names = [sorted(str(p.relative_to(out)) for p in out.rglob("*")) for out in (a, b)]
    assert names[0] == names[1] and "results.hdf5" in names[0]
    for mine, other in ((a, b), (b, a)):
        assert str(other) not in (mine / "run.log").read_text()
        assert json.loads((mine / "summary.json").read_text())["outdir"] == str(mine)
        assert not (mine / ".lock").exists()
    first, _ = load_estimates(a / "results.hdf5")
    second, _ = load_estimates(b / "results.hdf5")
    assert first.n_components == second.n_components > 0
    np.testing.assert_array_equal(first.C, second.C)
    assert (first.A != second.A).nnz == 0


def test_a_second_run_on_the_same_outdir_is_refused(job, tmp_path) -> None:
    movie, params, _ = job
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "shared"
    first = _start(movie, params, out, tmpdir)
    deadline = time.monotonic() + 60
    while not (out / ".lock").exists():
        assert first.poll() is None and time.monotonic() < deadline, "the first run never began"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)  # hold the first run mid-way (alive, holding the lock)
    try:
        lock = (out / ".lock").read_bytes()
        start = time.perf_counter()
        second = _start(movie, params, out, tmpdir)
        code, err = _finish(second, timeout=60)
        refused_in = time.perf_counter() - start
        assert (out / ".lock").read_bytes() == lock  # the refusal left the lock alone
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert code == 2, err
    assert "is being written by another run" in err and f"pid {first.pid}" in err
    assert len(err.strip().splitlines()) == 1  # one clear line, no traceback
    assert _finish(first)[0] == 0
    assert refused_in < 30
    records = json.loads((out / "run.json").read_text())["stages"]
    assert set(records) == {"convert", "motion", "cnmf", "evaluate"}
    assert load_estimates(out / "results.hdf5")[0].n_components > 0
    assert not (out / ".lock").exists()
