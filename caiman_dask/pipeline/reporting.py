"""The report stage: summary images over the cluster, then ``OUTDIR/report.html``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from caiman_dask.motion.apply import load_motion
from caiman_dask.motion.quality import store_metrics
from caiman_dask.pipeline.state import file_identity, stage_key
from caiman_dask.report import summary_images, write_report
from caiman_dask.results import Estimates

if TYPE_CHECKING:
    from caiman_dask.pipeline.run import RunContext


def motion_record(raw: str, corrected: str, storage_options: Any) -> dict[str, Any]:
    """Shifts, flags and CaImAn's quality metrics (raw vs corrected sample) of a run."""
    result, params = load_motion(corrected, storage_options)
    metrics = store_metrics(raw, corrected, crop=params.max_shifts,
                            storage_options=storage_options)
    return {"rigid_shifts": result.rigid_shifts, "pw_shifts": result.pw_shifts,
            "flags": result.flags, "metrics": metrics}


def _identity(regions: Any) -> Any:
    if regions is None:
        return None
    return file_identity(str(regions)) if isinstance(regions, (str, os.PathLike)) else "given"


def report(ctx: RunContext, *, raw: str, store: str, upstream: str, estimates: Estimates,
           summary: dict[str, Any], regions: Any) -> None:
    """Write the report of ``store`` (the corrected movie, or ``raw`` without motion).

    ``upstream`` is the evaluation's stage key (it covers the movie, the fit and the
    thresholds): the report is skipped when the folder records one of the same key and
    regions.
    """
    with ctx.stage("report") as info:
        key = stage_key(upstream=upstream, regions=_identity(regions))
        page = ctx.folder.path("report.html")
        if ctx.folder.done("report", key) and ctx.folder.exists("report.html"):
            info["skipped"] = True
            return
        ctx.folder.forget("report")
        so = ctx.storage_options
        images = summary_images(store, view=ctx.view, storage_options=so)
        motion = motion_record(raw, store, so) if store != raw else None
        write_report(ctx.folder.url, summary={**summary, "params": ctx.params.to_dict()},
                     images=images, estimates=estimates, motion=motion, regions=regions,
                     storage_options=so)
        ctx.folder.record("report", key)
        info["page"] = str(page)
