"""``caiman-dask demo``: a generated movie with ground truth through the whole job."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import tifffile

from caiman_dask.synthetic import SynthMovie, make_movie, move_frames, random_walk

#: Parameters of the demo movie, in CaImAn's groups.
DEMO_PARAMS: dict[str, dict[str, Any]] = {
    "data": {"fr": 30.0, "decay_time": 0.4},
    "motion": {"max_shifts": [6, 6], "num_frames_split": 100, "niter_rig": 1,
               "pw_rigid": False},
    "patch": {"rf": 20, "stride": 8, "only_init": True},
    "init": {"K": 8, "gSig": [3, 3], "nb": 1},
    "temporal": {"p": 2},
    "merging": {"merge_thr": 0.8},
    "quality": {"min_SNR": 2.5, "rval_thr": 0.8},
}


@dataclass(frozen=True)
class DemoMovie:
    """The written movie, its ground truth and the displacements applied."""

    path: pathlib.Path
    truth: SynthMovie
    displacements: np.ndarray

    def truth_masks(self) -> sp.csc_matrix:
        """True footprints (F-order pixels x neurons) for scoring."""
        return sp.csc_matrix(self.truth.A)


def make_demo_movie(folder: str | pathlib.Path, *, dims: tuple[int, int] = (128, 128),
                    n_frames: int = 1000, n_neurons: int = 40, seed: int = 0) -> DemoMovie:
    """Write a TIFF of neurons with GCaMP-like traces, neuropil, noise and slow motion."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth = make_movie(dims=dims, T=n_frames, K=n_neurons, gSig=5.0, seed=seed, baseline=15.0,
                       fr=DEMO_PARAMS["data"]["fr"])
    displacements = random_walk(np.random.default_rng(seed + 1), n_frames, step=0.3, limit=3)
    frames = move_frames(truth.Y, displacements)
    path = folder / "demo-movie.tif"
    tifffile.imwrite(path, np.clip(frames, 0, 65535).round().astype(np.uint16))
    return DemoMovie(path, truth, displacements)


def shift_error(found: np.ndarray, displacements: np.ndarray) -> float:
    """RMS error (px) of found shifts against known displacements, template offset removed."""
    error = found + displacements
    error -= error.mean(axis=0)
    return float(np.sqrt((error ** 2).sum(axis=1).mean()))
