"""The stages of the main job; each is skipped when done before with the same key."""

from __future__ import annotations

import logging
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

import os
import pickle

from caiman_dask.cnmf.driver import fit_cnmf
from caiman_dask.cnmf.patch import PatchResult
from caiman_dask.motion.apply import load_motion
from caiman_dask.motion.driver import motion_correct
from caiman_dask.movie import to_zarr
from caiman_dask.movie.paths import expand_sources
from caiman_dask.movie.zarrio import store_attrs
from caiman_dask.pipeline.state import file_identity, stage_key, write_json
from caiman_dask.results import Estimates, load_estimates, save_estimates, score_both

if TYPE_CHECKING:
    from caiman_dask.pipeline.params import RunParams
    from caiman_dask.pipeline.run import RunContext

logger = logging.getLogger("caiman_dask.run")


def _complete(path: str, storage_options: Any) -> bool:
    attrs = store_attrs(path, storage_options)
    return bool(attrs and attrs.get("complete") is True)


def _plan_options(ctx: RunContext) -> dict[str, Any]:
    patch, motion = ctx.params.group("patch"), ctx.params.motion
    return {"rf": patch["rf"] if patch["rf"] is not None else 25, "stride": patch["stride"],
            "border_pix": patch["border_pix"], "num_frames_split": motion.num_frames_split,
            "strides": motion.strides, "overlaps": motion.overlaps}


def convert(ctx: RunContext, inputs: list[str]) -> tuple[str, str]:
    """Convert the inputs into ``raw.zarr`` (an existing store is used as it is)."""
    so = ctx.storage_options
    with ctx.stage("convert") as info:
        if len(inputs) == 1 and _complete(inputs[0], so):
            info["skipped"] = True
            key = stage_key(store=inputs[0], created=store_attrs(inputs[0], so).get("created"))
            return inputs[0], key
        files = expand_sources(inputs, so)
        options = _plan_options(ctx)
        key = stage_key(inputs=[file_identity(f) for f in files], plan=options,
                        fr=ctx.params.cnmf.data.fr if ctx.params.fr_given else None)
        dest = str(ctx.folder.path("raw.zarr"))
        if ctx.folder.done("convert", key) and _complete(dest, so):
            info["skipped"] = True
            return dest, key
        ctx.folder.forget("convert")
        fr = ctx.params.cnmf.data.fr if ctx.params.fr_given else None
        to_zarr(files, dest, client=ctx.client, overwrite=True, storage_options=so, fr=fr,
                **options)
        ctx.folder.record("convert", key)
        return dest, key


def frame_rate(ctx: RunContext, raw: tuple[str, str]) -> RunParams:
    """The run's parameters with ``data.fr``: the user's, else the movie's, else 30 Hz."""
    if ctx.params.fr_given:
        return ctx.params
    fr = (store_attrs(raw[0], ctx.storage_options) or {}).get("fr")
    if fr is None:
        logger.warning("the movie records no frame rate: assuming data.fr=%g Hz; give the "
                       "real one with --set data.fr=HZ (it sets CNMF's event and SNR windows)",
                       ctx.params.cnmf.data.fr)
        return ctx.params
    logger.info("frame rate %g Hz, from %s", fr, raw[0])
    return ctx.params.with_frame_rate(fr)


def motion(ctx: RunContext, raw: tuple[str, str]) -> tuple[str, str]:
    """Motion-correct ``raw`` into ``corrected.zarr``."""
    source, upstream = raw
    so = ctx.storage_options
    with ctx.stage("motion") as info:
        key = stage_key(upstream=upstream, motion=ctx.params.motion.to_dict(),
                        plan=_plan_options(ctx))
        dest = str(ctx.folder.path("corrected.zarr"))
        if ctx.folder.done("motion", key) and _complete(dest, so):
            info["skipped"] = True
        else:
            ctx.folder.forget("motion")
            motion_correct(source, dest, params=ctx.params.motion, view=ctx.view,
                           storage_options=so, overwrite=True)
            ctx.folder.record("motion", key)
        result, _ = load_motion(dest, so)
        info["max_shift"] = [float(v) for v in abs(result.rigid_shifts).max(axis=0)]
        return dest, key


class PatchStore:
    """Each finished CNMF patch pickled in the run folder, so a crash loses no patch."""

    def __init__(self, folder: Any):
        self.folder = folder

    def load(self) -> dict[int, PatchResult]:
        """Patches finished by an earlier, interrupted run with the same key."""
        if not self.folder.is_dir():
            return {}
        done = {}
        for path in sorted(self.folder.glob("patch-*.pkl")):
            with path.open("rb") as fh:
                done[int(path.stem.split("-")[1])] = pickle.load(fh)
        return done

    def __call__(self, index: int, result: PatchResult) -> None:
        """Persist one patch atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".patch-{index:05d}.tmp"
        with tmp.open("wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.folder / f"patch-{index:05d}.pkl")


def cnmf(ctx: RunContext, source: tuple[str, str]) -> Estimates:
    """CNMF over patches, merging, refinement and evaluation into ``results.hdf5``."""
    store, upstream = source
    so = ctx.storage_options
    with ctx.stage("cnmf") as info:
        key = stage_key(upstream=upstream, cnmf=ctx.params.cnmf.to_dict())
        results = ctx.folder.path("results.hdf5")
        if ctx.folder.done("cnmf", key) and results.exists():
            info["skipped"] = True
            return load_estimates(results)[0]
        ctx.folder.forget("cnmf")
        patches = PatchStore(ctx.folder.path("patches") / key)
        done = patches.load()
        result = fit_cnmf(store, params=ctx.params.cnmf, view=ctx.view, storage_options=so,
                          work_dir=str(ctx.folder.path("work")), done_patches=done,
                          on_patch=patches)
        info.update(patches_reused=len(done), patches_computed=len(result.computed),
                    n_candidates=result.n_candidates, n_merged=result.n_merged,
                    timings=result.timings)
        save_estimates(results, result.estimates, ctx.params.caiman_dict(), overwrite=True)
        ctx.folder.record("cnmf", key)
        return result.estimates


def summarize(ctx: RunContext, inputs: list[str], estimates: Estimates, seconds: float,
              regions: Any) -> dict[str, Any]:
    """``OUTDIR/summary.json``: stages, timings, memory, counts, scores, versions."""
    accepted = estimates.idx_components
    summary: dict[str, Any] = {
        "inputs": inputs, "outdir": str(ctx.folder.root), "seconds": round(seconds, 3),
        "stages": ctx.timings, "n_components": estimates.n_components,
        "n_accepted": None if accepted is None else len(accepted),
        "dashboard": getattr(ctx.client, "dashboard_link", None), "versions": versions(),
    }
    if regions is not None:
        found = estimates.select(accepted) if accepted is not None else estimates
        summary["scores"] = {name: result.as_dict()
                             for name, result in score_both(found, regions).items()}
    write_json(ctx.folder.path("summary.json"), summary)
    return summary


def versions() -> dict[str, str | None]:
    """Versions that matter for reproducing a run."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("caiman-dask", "numpy", "scipy", "dask", "distributed", "zarr",
                 "opencv-python-headless"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


