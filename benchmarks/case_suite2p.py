"""Case 3: Suite2p's registration + detection and our main job on the neurofinder crop.

Suite2p runs in its own Python (``--suite2p-python``, see docs real-services.md: the CPU
torch needs torchvision's fake-kernel registration skipped) on the same frames, with its
default settings but the crop's frame rate (7 Hz), tau 1 s and a 10 px cell diameter; its
ROIs (``ypix``, ``xpix``) and ours (accepted components, on 2 workers) are scored against
the 124 manual ROIs with ``caiman_dask.results.score_both``. No target: F1 side by side.

Run: ``python benchmarks/case_suite2p.py --suite2p-python /tmp/s2p/bin/python [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.common import pin_threads  # noqa: E402

pin_threads(1)

import numpy as np  # noqa: E402

from benchmarks.common import write  # noqa: E402
from benchmarks.main_job import NEUROFINDER_SETTINGS, neurofinder_input, run_job  # noqa: E402

QUICK = {"frames": 150}  # Suite2p fails on a 128x128 corner (too few pixels to bin)
# Runs in the Suite2p Python: argv = frames.npy, fs, threads; prints one JSON line.
SUITE2P_SCRIPT = r'''
import json, sys, time
import numpy as np
import torch
_orig = torch.library.register_fake
def _skip_missing(op, func=None, /, **kw):
    def wrap(fn):
        try:
            return _orig(op, **kw)(fn)
        except RuntimeError:
            return fn
    return wrap if func is None else wrap(func)
torch.library.register_fake = _skip_missing
import suite2p
from suite2p.parameters import default_settings
from suite2p.registration.register import registration_wrapper
from suite2p.detection.detect import detection_wrapper
path, fs, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
cpu = torch.device("cpu")
frames = np.clip(np.load(path), 0, 32767).astype(np.int16)
settings = default_settings()
t0 = time.perf_counter()
registration_wrapper(frames, settings=settings["registration"], device=cpu)
t1 = time.perf_counter()
_, stat, _ = detection_wrapper(frames, diameter=[10.0, 10.0], tau=1.0, fs=fs,
                               settings=settings["detection"], device=cpu)
t2 = time.perf_counter()
rois = [np.stack([s["ypix"], s["xpix"]], 1).astype(int).tolist() for s in stat]
print(json.dumps({"registration_seconds": t1 - t0, "detection_seconds": t2 - t1,
                  "version": str(getattr(suite2p, "version", "?")), "rois": rois}))
'''


def run_suite2p(python: str, frames: pathlib.Path, *, fs: float, threads: int = 2
                ) -> dict[str, Any]:
    """Suite2p on ``frames`` (.npy) in ``python``; seconds, version and ROI coordinates."""
    proc = subprocess.run([python, "-c", SUITE2P_SCRIPT, str(frames), str(fs), str(threads)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(" | ".join(proc.stderr.strip().splitlines()[-3:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def score_rois(rois: list[list[list[int]]], dims: tuple[int, int], regions: str
               ) -> dict[str, Any]:
    """F1, precision, recall of ROI coordinate lists against the manual ROIs."""
    from caiman_dask.results import load_regions, score_both
    from caiman_dask.results.regions import coordinates_to_sparse

    found = coordinates_to_sparse([np.asarray(r, np.int64).reshape(-1, 2) for r in rois],
                                  dims, source="suite2p ROIs")
    truth = load_regions(regions, dims=dims)
    return {k: {m: v.as_dict()[m] for m in ("f1", "precision", "recall", "n_found", "n_true")}
            for k, v in score_both(found, truth, dims=dims).items()}


def probe(python: str | None) -> str | None:
    """None when ``python`` imports suite2p (with the workaround), else the reason."""
    if not python or not os.path.exists(python):
        return f"no Suite2p Python ({python or 'none given'}): pass --suite2p-python"
    check = SUITE2P_SCRIPT.split("path, fs")[0]
    proc = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=300)
    return None if proc.returncode == 0 else (
        "suite2p does not import: " + " | ".join(proc.stderr.strip().splitlines()[-2:]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite2p-python")
    parser.add_argument("--quick", action="store_true", help="first 150 frames")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/suite_suite2p.json)")
    opts = parser.parse_args(argv)
    payload: dict[str, Any] = {"case": "suite2p", "quick": opts.quick,
                               "load_before": os.getloadavg()}
    reason = probe(opts.suite2p_python)
    if reason is not None:
        print(write("suite_suite2p", {**payload, "skipped": reason}, opts.out))
        return
    with tempfile.TemporaryDirectory(prefix="bench-s2p-") as tmp:
        work = pathlib.Path(tmp)
        nf = neurofinder_input(work, **(QUICK if opts.quick else {}))
        frames = np.load(nf.movie) if nf.movie.endswith(".npy") else __import__(
            "tifffile").imread(nf.movie)
        np.save(work / "frames.npy", frames)
        s2p = run_suite2p(opts.suite2p_python, work / "frames.npy", fs=7.0)
        ours = run_job(nf.movie, work, mode="2", settings=NEUROFINDER_SETTINGS,
                       regions=nf.regions)
        s2p_scores = score_rois(s2p["rois"], frames.shape[1:], nf.regions)
    s2p_seconds = s2p["registration_seconds"] + s2p["detection_seconds"]
    payload["runs"] = {
        f"suite2p {s2p['version']} (torch, 2 threads)": {
            "seconds": s2p_seconds, "registration_seconds": s2p["registration_seconds"],
            "detection_seconds": s2p["detection_seconds"], "n_rois": len(s2p["rois"]),
            "scores": s2p_scores},
        "caiman-dask (2 workers)": {"seconds": ours["seconds"], "n_rois": ours["n_accepted"],
                                    "scores": ours["scores"], "stages": ours["stages"]}}
    payload["frames"] = int(frames.shape[0])
    print(write("suite_suite2p", payload, opts.out))


if __name__ == "__main__":
    main()
