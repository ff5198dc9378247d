"""Bare motion-correction maths: frames/s of ``correct_block`` against the floor.

Movies: a generated 512x512 uint16 movie (400 frames: neuron-like blobs on a smooth
background, random sub-pixel rigid motion within +-5 px, Poisson-like noise) and the
neurofinder crop (600x256x256 uint16). Each is corrected block by block, as the driver will
(``num_frames_split`` = 80 frames per ``correct_block`` call, template preparation
included), rigid and pw-rigid (default parameters). The floor, measured in the same run on
the same frames, is one FFT cross-correlation (``cv2.dft`` -> ``cv2.mulSpectrums`` ->
``cv2.idft`` -> ``cv2.minMaxLoc``, output buffers reused) plus one cubic
``cv2.warpAffine`` per frame, and the template's FFT once.

Single thread: thread variables are set to 1 before NumPy loads and ``cv2.setNumThreads(1)``.
Frames/s by wall clock and by process CPU time (steadier on a shared machine).
Run: ``python benchmarks/motion_maths.py [--reps N] [--quick] [--out FILE]``; writes
``benchmarks/results/motion_maths.json``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

from common import pin_threads

pin_threads(1)  # before NumPy

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402
import tifffile  # noqa: E402
from common import stats, timed, write  # noqa: E402

from caiman_dask.motion import MotionParams, correct_block  # noqa: E402

NEUROFINDER = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
               / "neurofinder-00.00-crop" / "movie.tif")


def synthetic_movie(n_frames: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """uint16 movie of a neuron-like field moving rigidly by up to +-5 px."""
    rng = np.random.default_rng(seed)
    field = np.zeros((size, size))
    field[rng.integers(0, size, 800), rng.integers(0, size, 800)] = rng.uniform(500, 2000, 800)
    field = ndi.gaussian_filter(field, 2.5) * 40 + 300 * (
        1 + ndi.gaussian_filter(rng.standard_normal((size, size)), 30) * 20)
    field = field.astype(np.float32)
    frames = np.empty((n_frames, size, size), np.uint16)
    matrix = np.eye(2, 3)
    for index, (dy, dx) in enumerate(rng.uniform(-5, 5, (n_frames, 2))):
        matrix[:, 2] = (dx, dy)
        moved = cv2.warpAffine(field, matrix, (size, size), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT)
        frames[index] = np.clip(rng.poisson(np.clip(moved, 1, None)), 0, 65535)
    return frames


def floor(frames: np.ndarray, template: np.ndarray) -> None:
    """One FFT cross-correlation and one cubic warp per frame, nothing else."""
    rows, cols = template.shape
    spectrum_t = cv2.dft(template)
    frame, spectrum = np.empty((rows, cols), np.float32), np.empty((rows, cols), np.float32)
    product, xcorr = np.empty_like(spectrum), np.empty_like(spectrum)
    out = np.empty((len(frames), rows, cols), np.float32)
    matrix = np.eye(2, 3)
    for index in range(len(frames)):
        np.copyto(frame, frames[index], casting="unsafe")
        cv2.dft(frame, dst=spectrum)
        cv2.mulSpectrums(spectrum, spectrum_t, 0, c=product, conjB=True)
        cv2.idft(product, dst=xcorr, flags=cv2.DFT_REAL_OUTPUT)
        _, _, _, (x, y) = cv2.minMaxLoc(xcorr)
        matrix[:, 2] = (-(x if x < cols // 2 else x - cols), -(y if y < rows // 2 else y - rows))
        cv2.warpAffine(frame, matrix, (cols, rows), dst=out[index], flags=cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REPLICATE)


def by_blocks(frames: np.ndarray, template: np.ndarray, params: MotionParams) -> None:
    """``correct_block`` over consecutive blocks of ``num_frames_split`` frames."""
    step = params.num_frames_split
    for start in range(0, len(frames), step):
        correct_block(frames[start:start + step], template, params)


def measure(frames: np.ndarray, reps: int) -> dict[str, object]:
    """frames/s of the floor, rigid and pw-rigid correction, interleaved repetitions.

    Wall-clock ``fps`` and ``fps_cpu`` (process CPU time: steadier when other processes
    share the core, as on the 2-core CI machine).
    """
    template = frames[:: max(1, len(frames) // 50)].astype(np.float32).mean(axis=0)
    runs = {
        "floor": lambda: floor(frames, template),
        "rigid": lambda: by_blocks(frames, template, MotionParams()),
        "pw_rigid": lambda: by_blocks(frames, template, MotionParams(pw_rigid=True)),
    }
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up (imports, first allocations, cached tables)
    for _ in range(reps):
        for name, run in runs.items():
            start = time.process_time()
            seconds, _ = timed(run)
            wall[name].append(len(frames) / seconds)
            cpu[name].append(len(frames) / (time.process_time() - start))
    result: dict[str, object] = {"frames": len(frames), "shape": list(frames.shape[1:]),
                                 "block_frames": MotionParams().num_frames_split}
    for name in runs:
        result[name] = {"fps": stats(wall[name]), "fps_cpu": stats(cpu[name]),
                        "ms_per_frame_median": 1e3 / float(np.median(wall[name]))}
    for name in ("rigid", "pw_rigid"):
        result[f"{name}_vs_floor"] = float(np.median(wall[name]) / np.median(wall["floor"]))
        result[f"{name}_vs_floor_cpu"] = float(np.median(cpu[name]) / np.median(cpu["floor"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100 synthetic frames, 2 reps")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    reps, n_frames = (2, 100) if args.quick else (args.reps, 400)
    load_before = os.getloadavg()
    results = {"synthetic_512": measure(synthetic_movie(n_frames), reps)}
    if NEUROFINDER.exists():
        results["neurofinder_256"] = measure(tifffile.imread(NEUROFINDER), reps)
    path = write("motion_maths", {
        "threads": {"opencv": cv2.getNumThreads(), "blas_env": 1},
        "load_average_before": load_before,
        "floor": "cv2.dft + cv2.mulSpectrums + cv2.idft + cv2.minMaxLoc + cubic "
                 "cv2.warpAffine per frame (buffers reused), template FFT once",
        "results": results}, args.out)
    for movie, result in results.items():
        print(movie, {k: round(result[k]["fps"]["median"]) for k in ("floor", "rigid",
                                                                    "pw_rigid")},
              f"rigid/floor {result['rigid_vs_floor']:.2f} "
              f"(cpu {result['rigid_vs_floor_cpu']:.2f}) "
              f"pw/floor {result['pw_rigid_vs_floor']:.2f}")
    print("wrote", path)


if __name__ == "__main__":
    main()
