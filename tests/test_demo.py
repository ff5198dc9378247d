"""The README's first command: the demo runs the whole job on a generated movie."""

from __future__ import annotations

import re

from caiman_dask.cli import main


def test_demo_runs_the_main_job_and_finds_the_truth(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--frames", "400", "--n-workers", "2"]) == 0
    out = capsys.readouterr().out
    assert float(re.search(r"recovered to ([0-9.]+) px RMS", out).group(1)) < 0.3
    f1 = {m[0]: float(m[1]) for m in re.findall(r"F1 against the truth \((\w+)\): ([0-9.]+)", out)}
    assert f1["centroid"] >= 0.9 and f1["iou"] >= 0.9
    assert (tmp_path / "demo" / "run" / "results.hdf5").is_file()
