"""The README's first command: the demo runs end to end on a generated movie."""

from __future__ import annotations

import re

from caiman_dask.cli import main


def test_demo_recovers_the_motion_it_generated(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--frames", "300", "--n-workers", "2"]) == 0
    out = capsys.readouterr().out
    error = float(re.search(r"recovered to ([0-9.]+) px RMS", out).group(1))
    assert error < 0.3
    assert (tmp_path / "demo" / "corrected.zarr").is_dir()
