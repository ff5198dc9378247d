"""The stages of the main job; each is skipped when done before with the same key."""

from __future__ import annotations

import logging
import pickle
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from caiman_dask.cnmf.driver import evaluate_estimates, fit_cnmf
from caiman_dask.cnmf.patch import PatchResult
from caiman_dask.motion.apply import load_motion
from caiman_dask.motion.driver import motion_correct
from caiman_dask.movie import to_zarr
from caiman_dask.movie.paths import expand_sources
from caiman_dask.movie.zarrio import store_attrs
from caiman_dask.pipeline.redact import redact
from caiman_dask.pipeline.state import RunFolder, file_identity, stage_key
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
        key = stage_key(inputs=[file_identity(f, so) for f in files], plan=options,
                        fr=ctx.params.cnmf.data.fr if ctx.params.fr_given else None)
        dest = ctx.folder.path("raw.zarr")
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
                        **_engine_part(ctx),
                        plan=_plan_options(ctx))
        dest = ctx.folder.path("corrected.zarr")
        if ctx.folder.done("motion", key) and _complete(dest, so):
            info["skipped"] = True
        else:
            ctx.folder.forget("motion")
            motion_correct(source, dest, params=ctx.params.motion, view=ctx.view,
                           storage_options=so, overwrite=True, engine=ctx.engine)
            ctx.folder.record("motion", key)
        result, _ = load_motion(dest, so)
        info["max_shift"] = [float(v) for v in abs(result.rigid_shifts).max(axis=0)]
        return dest, key


class PatchStore:
    """Each finished CNMF patch pickled in the run folder, so a crash loses no patch.

    ``prefix`` is the patches' folder inside the run folder (``patches/KEY``); on
    object storage each patch is one object.
    """

    def __init__(self, folder: RunFolder, prefix: str):
        self.folder = folder
        self.prefix = prefix

    def load(self) -> dict[int, PatchResult]:
        """Patches finished by an earlier, interrupted run with the same key."""
        done = {}
        for name in self.folder.listdir(self.prefix):
            if name.startswith("patch-") and name.endswith(".pkl"):
                data = self.folder.read_bytes(f"{self.prefix}/{name}")
                if data is not None:
                    done[int(name[len("patch-"):-len(".pkl")])] = pickle.loads(data)
        return done

    def __call__(self, index: int, result: PatchResult) -> None:
        """Persist one patch atomically."""
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        self.folder.write_bytes(f"{self.prefix}/patch-{index:05d}.pkl", data)


def _engine_part(ctx: RunContext) -> dict[str, str]:
    """The engine in a stage key: absent for the built-in one (keys of earlier runs hold)."""
    return {} if ctx.engine == "builtin" else {"engine": ctx.engine}


def fit_key(ctx: RunContext, upstream: str) -> str:
    """Key of the fit: every CNMF group but ``quality`` (evaluation has its own stage,
    so new thresholds reuse the fit and its patches)."""
    groups = ctx.params.cnmf.to_dict()
    groups.pop("quality", None)
    return stage_key(upstream=upstream, cnmf=groups, **_engine_part(ctx))


def evaluation_key(ctx: RunContext, fit: str) -> str:
    """Key of the evaluation: the fit's key and the ``quality`` group."""
    return stage_key(fit=fit, quality=ctx.params.cnmf.to_dict()["quality"])


def _save_results(ctx: RunContext, estimates: Estimates) -> None:
    save_estimates(ctx.folder.local("results.hdf5"), estimates, ctx.params.caiman_dict(),
                   overwrite=True)
    ctx.folder.upload("results.hdf5")


def cnmf(ctx: RunContext, source: tuple[str, str]) -> tuple[Estimates, str]:
    """CNMF over patches, merging and refinement (evaluated) into ``results.hdf5``;
    returns the estimates and the fit's key."""
    store, upstream = source
    so = ctx.storage_options
    with ctx.stage("cnmf") as info:
        key = fit_key(ctx, upstream)
        if ctx.folder.done("cnmf", key):
            results = ctx.folder.download("results.hdf5")
            if results is not None:
                info["skipped"] = True
                return load_estimates(results)[0], key
        ctx.folder.forget("cnmf")
        ctx.folder.forget("evaluate")
        patches = PatchStore(ctx.folder, f"patches/{key}")
        done = patches.load()
        result = fit_cnmf(store, params=ctx.params.cnmf, view=ctx.view, storage_options=so,
                          engine=ctx.engine, work_dir=ctx.folder.path("work"),
                          done_patches=done, on_patch=patches)
        info.update(patches_reused=len(done), patches_computed=len(result.computed),
                    n_candidates=result.n_candidates, n_merged=result.n_merged,
                    timings=result.timings)
        _save_results(ctx, result.estimates)
        ctx.folder.record("cnmf", key)
        ctx.folder.record("evaluate", evaluation_key(ctx, key))  # evaluated by the fit
        return result.estimates, key


def evaluate(ctx: RunContext, source: tuple[str, str], fitted: tuple[Estimates, str]
             ) -> tuple[Estimates, str]:
    """Component evaluation with the ``quality`` thresholds (skipped when the fit was
    evaluated with the same ones); returns the estimates and the evaluation's key."""
    estimates, fit = fitted
    with ctx.stage("evaluate") as info:
        key = evaluation_key(ctx, fit)
        if ctx.folder.done("evaluate", key):
            fitted_now = ctx.timings.get("cnmf", {}).get("skipped") is False
            info["skipped"] = not fitted_now  # else it was evaluated by this run's fit
            return estimates, key
        estimates = evaluate_estimates(source[0], estimates, params=ctx.params.cnmf,
                                       view=ctx.view, work_dir=ctx.folder.path("work"),
                                       storage_options=ctx.storage_options)
        _save_results(ctx, estimates)
        ctx.folder.record("evaluate", key)
        info["n_accepted"] = int(np.size(estimates.idx_components))
        return estimates, key


def summarize(ctx: RunContext, inputs: list[str], estimates: Estimates, seconds: float,
              regions: Any) -> dict[str, Any]:
    """``OUTDIR/summary.json``: stages, timings, memory, counts, scores, versions."""
    accepted = estimates.idx_components
    summary: dict[str, Any] = {
        "inputs": [redact(i) for i in inputs], "outdir": redact(ctx.folder.url),
        "seconds": round(seconds, 3),
        "stages": ctx.timings, "n_components": estimates.n_components,
        "n_accepted": None if accepted is None else len(accepted),
        "dashboard": getattr(ctx.client, "dashboard_link", None), "versions": versions(),
    }
    if regions is not None:
        found = estimates.select(accepted) if accepted is not None else estimates
        summary["scores"] = {name: result.as_dict()
                             for name, result in score_both(found, regions).items()}
    ctx.folder.write_json("summary.json", summary)
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


