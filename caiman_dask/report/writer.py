"""Write ``OUTDIR/report.html`` and its PNGs in ``OUTDIR/report/``.

Files are written through a temporary name and renamed, PNGs first and the page last,
so an interrupted report never looks complete. Only the report's own files are
replaced: an existing ``report.html`` or PNG without the report's generator mark is a
user's file and stops the report before anything is written. At an fsspec URL the
report is drawn in a local temporary folder and uploaded, PNGs first, page last.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import posixpath
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from matplotlib.figure import Figure

from caiman_dask.errors import ParameterError, StoreExistsError
from caiman_dask.movie.paths import filesystem, is_url
from caiman_dask.report import figures
from caiman_dask.report.images import SummaryImages
from caiman_dask.report.inputs import MotionSummary, StageRow
from caiman_dask.report.page import GENERATOR, Picture, render_page
from caiman_dask.results.estimates import Estimates
from caiman_dask.results.regions import load_regions

PAGE = "report.html"
FOLDER = "report"
#: Every PNG name the report may write (only these are ever replaced or removed).
PNG_NAMES = ("mean.png", "correlation.png", "motion.png", "motion_metrics.png",
             "traces.png", "timings.png")

Builder = Callable[[], Figure]


def _is_ours(path: pathlib.Path) -> bool:
    with open(path, "rb") as fh:
        return GENERATOR.encode() in fh.read(4096)


def _check_targets(root: pathlib.Path) -> None:
    folder = root / FOLDER
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"{folder} exists and is not a folder: the report writes its "
                               "PNGs there; move that file or choose another output folder")
    for path in [root / PAGE] + [folder / name for name in PNG_NAMES]:
        if path.exists() and not (path.is_file() and _is_ours(path)):
            raise StoreExistsError(f"{path} exists and was not written by caiman-dask's "
                                   "report: move it or choose another output folder")


def _save(fig: Figure, path: pathlib.Path) -> tuple[int, int]:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=figures.DPI, format="png", metadata={"Software": GENERATOR})
    os.replace(tmp, path)
    width, height = fig.canvas.get_width_height()
    return int(width), int(height)


def _regions(regions: Any, dims: tuple[int, int]) -> sp.csc_matrix | None:
    if regions is None:
        return None
    if isinstance(regions, (str, os.PathLike)):
        return load_regions(regions, dims)
    if not sp.issparse(regions) or regions.shape[0] != dims[0] * dims[1]:
        raise ParameterError(f"regions must be a regions.json path or a sparse (d1*d2, K) "
                             f"matrix for dims {dims}, got {type(regions).__name__} "
                             f"{getattr(regions, 'shape', '')}")
    return sp.csc_matrix(regions)


def _plan(images: SummaryImages, estimates: Estimates | None,
          motion: MotionSummary | None, regions: sp.csc_matrix | None, fr: float | None,
          stages: list[StageRow], n_traces: int) -> list[tuple[str, str, str, Builder]]:
    """``(file, title, caption, builder)`` of every picture to draw, in page order."""
    outline = ("Contours at 0.2 of each footprint's maximum: accepted cyan, rejected "
               "magenta" + (", manual ROIs dotted yellow." if regions is not None else "."))
    plan: list[tuple[str, str, str, Builder]] = [
        ("mean.png", "Mean image", f"Mean of {images.n_frames} frames. {outline}",
         lambda: figures.image_figure(images.mean, title="mean image", estimates=estimates,
                                      regions=regions)),
        ("correlation.png", "Local-correlation image",
         f"Mean correlation of each pixel with its 8 neighbours. {outline}",
         lambda: figures.image_figure(images.correlation, title="local correlation",
                                      estimates=estimates, regions=regions)),
    ]
    if motion is not None:
        tiles = "; shaded: range of the piecewise-rigid tile shifts" if motion.pw_shifts \
            is not None else ""
        plan.append(("motion.png", "Motion shifts", f"Shifts applied to each frame{tiles}.",
                     lambda: figures.motion_figure(motion, fr=fr)))
    if motion is not None and (motion.before or motion.after):
        plan.append(("motion_metrics.png", "Motion metrics", "Correlation of each frame "
                     "with the mean image, and crispness of the mean, raw vs corrected.",
                     lambda: figures.metrics_figure(motion, fr=fr)))
    if estimates is not None and estimates.C is not None and estimates.n_components:
        plan.append(("traces.png", "Traces", "Top accepted components by SNR.",
                     lambda: figures.traces_figure(estimates, fr=fr, n=n_traces)))
    if stages:
        plan.append(("timings.png", "Timings", "Wall time and peak memory per stage.",
                     lambda: figures.timings_figure(stages)))
    return plan


def frame_rate(summary: dict[str, Any], images: SummaryImages) -> float | None:
    """The summary's ``fr``, else the movie's, else the parameters' ``data.fr``."""
    data = (summary.get("params") or {}).get("data") or {}
    for value in (summary.get("fr"), images.fr, data.get("fr")):
        if value:
            return float(value)
    return None


def _counts(summary: dict[str, Any], estimates: Estimates | None) -> list[tuple[str, Any]]:
    cnmf = (summary.get("stages") or {}).get("cnmf") or {}
    rows = [(label, cnmf[k]) for k, label in (("n_candidates", "candidates from patches"),
                                              ("n_merged", "after merging"))
            if cnmf.get(k) is not None]
    if estimates is None:
        return rows + [(k, summary[k]) for k in ("n_components", "n_accepted") if k in summary]
    good, bad = estimates.idx_components, estimates.idx_components_bad
    rows.append(("components before evaluation", estimates.n_components))
    if good is not None:
        rows.append(("accepted after evaluation", int(np.size(good))))
        rows.append(("rejected", int(np.size(bad)) if bad is not None
                     else estimates.n_components - int(np.size(good))))
    return rows


def write_report(outdir: str | os.PathLike[str], *, summary: dict[str, Any],
                 images: SummaryImages, estimates: Estimates | None,
                 motion: dict[str, Any] | None, regions: Any = None,
                 n_traces: int = 10,
                 storage_options: dict[str, Any] | None = None) -> pathlib.Path | str:
    """Write ``outdir/report.html`` and its PNGs in ``outdir/report/``.

    Parameters
    ----------
    outdir : path or str
        The run's output folder (created if missing), or an fsspec URL.
    summary : dict
        The run summary: optional ``inputs``, ``seconds``, ``stages`` (timings and peak
        memory per stage), ``scores`` (F1 per criterion), ``params``, ``versions``, ``fr``.
    images : SummaryImages
        Mean and local-correlation images (:func:`summary_images`).
    estimates : Estimates or None
        Components to outline and whose traces to plot.
    motion : dict or None
        ``{"rigid_shifts", "pw_shifts"?, "flags"?, "metrics"?}`` (see :class:`MotionSummary`).
    regions : path or sparse matrix, optional
        Manual ROIs (``regions.json`` or a (d1*d2, K) matrix), outlined on the images.
    n_traces : int
        Components whose traces are plotted.
    storage_options : dict, optional
        fsspec options for a URL ``outdir``.

    Returns
    -------
    pathlib.Path or str
        The page (its URL for a URL ``outdir``).
    """
    if is_url(outdir):
        return _write_remote(os.fspath(outdir), storage_options, dict(
            summary=summary, images=images, estimates=estimates, motion=motion,
            regions=regions, n_traces=n_traces))
    root = pathlib.Path(outdir)
    if estimates is not None and estimates.dims != images.dims:
        raise ParameterError(f"estimates are for {estimates.dims} frames but the summary "
                             f"images are {images.dims}: pass the images of the same movie")
    motion_info = None if motion is None else MotionSummary.from_dict(motion)
    masks = _regions(regions, images.dims)
    fr = frame_rate(summary, images)
    stages = StageRow.rows(summary.get("stages"))
    if root.exists() and not root.is_dir():
        raise StoreExistsError(f"{root} exists and is not a folder: choose another output")
    _check_targets(root)
    (root / FOLDER).mkdir(parents=True, exist_ok=True)
    plan = _plan(images, estimates, motion_info, masks, fr, stages, n_traces)
    pictures = []
    for name, title, caption, build in plan:
        width, height = _save(build(), root / FOLDER / name)
        pictures.append(Picture(name, title, caption, width, height))
    _remove_stale(root / FOLDER, {p.name for p in pictures})
    facts = {"frames": images.n_frames, "frame size": f"{images.dims[0]} x {images.dims[1]}",
             "frame rate (Hz)": fr, "images from": images.source or None}
    page = render_page(summary=summary, facts=facts, counts=_counts(summary, estimates),
                       pictures=pictures, stages=stages)
    tmp = root / f".{PAGE}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, root / PAGE)
    return root / PAGE


def _remove_stale(folder: pathlib.Path, keep: set[str]) -> None:
    """Remove the report's own PNGs of an earlier report that this one does not draw."""
    for name in set(PNG_NAMES) - keep:
        path = folder / name
        if path.is_file() and _is_ours(path):
            path.unlink()


def _write_remote(url: str, storage_options: dict[str, Any] | None,
                  report: dict[str, Any]) -> str:
    """Draw the report in a local temporary folder, then upload it (page last)."""
    fs, root = filesystem(url, storage_options)
    for name in [PAGE] + [f"{FOLDER}/{png}" for png in PNG_NAMES]:
        with contextlib.suppress(FileNotFoundError), fs.open(posixpath.join(root, name),
                                                             "rb") as fh:
            if GENERATOR.encode() not in fh.read(4096):
                raise StoreExistsError(f"{posixpath.join(url, name)} exists and was not "
                                       "written by caiman-dask's report: move it or choose "
                                       "another output folder")
    with tempfile.TemporaryDirectory(prefix="caiman-dask-report-") as tmp:
        write_report(tmp, **report)
        drawn = set(os.listdir(os.path.join(tmp, FOLDER)))
        for name in sorted(drawn):
            fs.put_file(os.path.join(tmp, FOLDER, name), posixpath.join(root, FOLDER, name))
        for name in sorted(set(PNG_NAMES) - drawn):  # an earlier report's, not drawn now
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(posixpath.join(root, FOLDER, name))
        fs.put_file(os.path.join(tmp, PAGE), posixpath.join(root, PAGE))
    return posixpath.join(url, PAGE)
