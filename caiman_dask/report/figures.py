"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No ``pyplot``: every function builds its own :class:`~matplotlib.figure.Figure`, so
nothing leaks into (or depends on) global plotting state. Sizes are fixed in pixels
(``DPI`` x inches) so the HTML can state them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from caiman_dask.report.inputs import MotionSummary, StageRow
from caiman_dask.results.estimates import Estimates
from caiman_dask.results.score import binarize_columns

DPI = 100
ACCEPTED, REJECTED, MANUAL = "#00e5ff", "#ff3b8b", "#ffd400"
RAW, DENOISED, SPIKES = "#b0b0b0", "#0072b2", "#d55e00"
BEFORE, AFTER, FLAGGED = "#999999", "#0072b2", "#cc0000"


def new_figure(width: int, height: int) -> Figure:
    """A ``width`` x ``height`` pixel figure on an Agg canvas."""
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def draw_outlines(ax: Any, A: sp.spmatrix, dims: tuple[int, int], *, color: str,
                  fraction: float = 0.2, style: str = "-", width: float = 0.8) -> None:
    """Outline each column of ``A`` (F-order pixels) where it is >= ``fraction`` x its max
    (the scorer's binarisation), one contour per component drawn on its bounding box."""
    masks = binarize_columns(A, fraction)
    d1 = dims[0]
    for k in range(masks.shape[1]):
        pix = masks.indices[masks.indptr[k]:masks.indptr[k + 1]]
        if pix.size == 0:
            continue
        rows, cols = pix % d1, pix // d1
        r0, c0 = rows.min() - 1, cols.min() - 1
        box = np.zeros((rows.max() - r0 + 2, cols.max() - c0 + 2))
        box[rows - r0, cols - c0] = 1.0
        ax.contour(np.arange(box.shape[1]) + c0, np.arange(box.shape[0]) + r0, box,
                   levels=[0.5], colors=color, linewidths=width, linestyles=style)


def _display_range(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [1.0, 99.7])
    return float(low), float(high if high > low else low + 1.0)


def image_figure(image: np.ndarray, *, title: str, estimates: Estimates | None = None,
                 regions: sp.spmatrix | None = None, fraction: float = 0.2,
                 size: int = 900) -> Figure:
    """A summary image with accepted / rejected component outlines and manual ROIs.

    Parameters
    ----------
    image : ndarray
        (d1, d2) image (NaN shown as the background colour).
    title : str
        Figure title.
    estimates : Estimates, optional
        Components to outline; without evaluation all count as accepted.
    regions : sparse matrix, optional
        (d1*d2, K) manual ROIs, outlined dotted.
    fraction : float
        Outline level, a fraction of each footprint's maximum.
    size : int
        Width and height in pixels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = new_figure(size, size)
    ax = fig.add_axes((0.04, 0.08, 0.92, 0.84))
    low, high = _display_range(image)
    ax.imshow(np.ma.masked_invalid(image), cmap="gray", vmin=low, vmax=high,
              interpolation="nearest")
    ax.set_facecolor("#202020")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    dims = (int(image.shape[0]), int(image.shape[1]))
    handles = _outline_components(ax, estimates, dims, fraction)
    if regions is not None and regions.shape[1]:
        draw_outlines(ax, regions, dims, color=MANUAL, fraction=0.5, style=":", width=0.7)
        handles.append(Line2D([], [], color=MANUAL, ls=":", label=f"manual ({regions.shape[1]})"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), facecolor="#202020",
                   edgecolor="#202020", framealpha=1.0, labelcolor="white")
    return fig


def _outline_components(ax: Any, estimates: Estimates | None, dims: tuple[int, int],
                        fraction: float) -> list[Line2D]:
    if estimates is None or estimates.n_components == 0:
        return []
    good = estimates.idx_components
    good = np.arange(estimates.n_components) if good is None else np.asarray(good, int)
    bad = np.setdiff1d(np.arange(estimates.n_components), good)
    handles = []
    for idx, color, label in ((bad, REJECTED, "rejected"), (good, ACCEPTED, "accepted")):
        if idx.size:
            draw_outlines(ax, estimates.A[:, idx], dims, color=color, fraction=fraction)
        handles.append(Line2D([], [], color=color, label=f"{label} ({idx.size})"))
    return handles[::-1]


def _time(n: int, fr: float | None) -> tuple[np.ndarray, str]:
    return (np.arange(n) / fr, "time (s)") if fr else (np.arange(n, dtype=float), "frame")


def motion_figure(motion: MotionSummary, *, fr: float | None) -> Figure:
    """Rigid shifts over time and, for piecewise-rigid runs, the spread of tile shifts."""
    rows = 2 if motion.pw_shifts is None else 3
    fig = new_figure(1200, 250 * rows + 50)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    t, label = _time(len(motion.rigid_shifts), fr)
    for ax, axis, name in zip(axes[:2], (1, 0), ("x (columns)", "y (rows)"), strict=True):
        ax.plot(t, motion.rigid_shifts[:, axis], color=DENOISED, lw=0.8, label="rigid")
        ax.set_ylabel(f"shift {name} (px)")
        _mark_flags(ax, t, motion.flags)
    if motion.pw_shifts is not None:
        _pw_spread(axes, t, motion.pw_shifts)
    axes[0].set_title("motion correction: shifts applied")
    axes[-1].set_xlabel(label)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def _mark_flags(ax: Any, t: np.ndarray, flags: np.ndarray | None) -> None:
    if flags is not None and np.any(flags):
        for x in t[np.asarray(flags) != 0]:
            ax.axvline(x, color=FLAGGED, lw=0.6, alpha=0.7)
        ax.plot([], [], color=FLAGGED, lw=0.6, label="flagged frame")


def _pw_spread(axes: np.ndarray, t: np.ndarray, pw: np.ndarray) -> None:
    tiles = pw.reshape(len(pw), -1, 2)
    for ax, axis in zip(axes[:2], (1, 0), strict=True):
        low, high = tiles[:, :, axis].min(axis=1), tiles[:, :, axis].max(axis=1)
        ax.fill_between(t, low, high, color=SPIKES, alpha=0.25, lw=0,
                        label=f"pw-rigid tiles (min-max of {tiles.shape[1]})")
    spread = tiles.max(axis=1) - tiles.min(axis=1)
    axes[2].plot(t, spread[:, 1], color=DENOISED, lw=0.8, label="x range")
    axes[2].plot(t, spread[:, 0], color=SPIKES, lw=0.8, label="y range")
    axes[2].set_ylabel("tile spread (px)")


def metrics_figure(motion: MotionSummary, *, fr: float | None) -> Figure:
    """Frame correlation with the mean and crispness, before and after correction."""
    fig = new_figure(1200, 400)
    ax, bars = fig.subplots(1, 2, width_ratios=(4, 1))
    curves = [(name, curve, color) for name, curve, color in
              (("raw", motion.before, BEFORE), ("corrected", motion.after, AFTER)) if curve]
    for name, curve, color in curves:
        t, label = _time(len(curve.correlations), fr)
        ax.plot(t, curve.correlations, color=color, lw=0.8,
                label=f"{name} (mean {np.mean(curve.correlations):.3f})")
    ax.set_xlabel(label if curves else "frame")
    ax.set_ylabel("correlation with mean image")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    drawn = bars.bar([c[0] for c in curves], [c[1].crispness for c in curves],
                     color=[c[2] for c in curves])
    bars.bar_label(drawn, fmt="%.0f", fontsize="small")
    bars.set_title("crispness of the mean", fontsize="medium")
    fig.tight_layout()
    return fig


def top_components(estimates: Estimates, n: int) -> np.ndarray:
    """Indices of up to ``n`` accepted components, highest ``SNR_comp`` first (peak of C
    when there is no SNR)."""
    pool = estimates.idx_components
    pool = np.arange(estimates.n_components) if pool is None else np.asarray(pool, int)
    if estimates.SNR_comp is not None:
        key = np.asarray(estimates.SNR_comp, dtype=float)[pool]
    else:
        key = np.asarray(estimates.C, dtype=float)[pool].max(axis=1)
    return pool[np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")[:n]]


def traces_figure(estimates: Estimates, *, fr: float | None, n: int = 10) -> Figure:
    """Traces of the top components: C + YrA (raw), C (denoised), S (deconvolved, scaled)."""
    top = top_components(estimates, n)
    fig = new_figure(1200, 110 * max(len(top), 1) + 90)
    axes = fig.subplots(max(len(top), 1), 1, sharex=True, squeeze=False)[:, 0]
    t, label = _time(estimates.C.shape[1], fr)
    for ax, k in zip(axes, top, strict=False):
        _trace_row(ax, t, estimates, int(k))
    axes[0].legend(handles=[Line2D([], [], color=c, label=s) for c, s in
                            ((RAW, "C + YrA"), (DENOISED, "C"), (SPIKES, "S (scaled)"))],
                   loc="upper right", ncol=3, fontsize="small")
    axes[0].set_title(f"top {len(top)} components by SNR")
    axes[-1].set_xlabel(label)
    fig.tight_layout(h_pad=0.2)
    return fig


def _trace_row(ax: Any, t: np.ndarray, est: Estimates, k: int) -> None:
    c = np.asarray(est.C[k], dtype=float)
    if est.YrA is not None:
        ax.plot(t, c + est.YrA[k], color=RAW, lw=0.6)
    ax.plot(t, c, color=DENOISED, lw=0.9)
    if est.S is not None and np.max(est.S[k]) > 0:
        s = np.asarray(est.S[k], dtype=float)
        hit = s > 0
        span = max(float(np.ptp(c)), 1e-12)
        base = float(c.min()) - 0.35 * span
        ax.vlines(t[hit], base, base + 0.3 * span * s[hit] / s.max(), color=SPIKES, lw=0.8)
    snr = "" if est.SNR_comp is None else f"\nSNR {float(est.SNR_comp[k]):.1f}"
    ax.set_ylabel(f"#{k}{snr}", rotation=0, ha="right", va="center", fontsize="small")
    ax.set_yticks([])
    ax.margins(x=0)


def timings_figure(rows: list[StageRow]) -> Figure:
    """Wall time and peak memory (client, largest worker) per stage."""
    fig = new_figure(1200, 160 + 45 * max(len(rows), 1))
    ax_time, ax_mem = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))
    names = [r.name + (" (skipped)" if r.skipped else "") for r in rows]
    bars = ax_time.barh(y, [r.seconds for r in rows], color=AFTER)
    ax_time.bar_label(bars, fmt="%.1f", padding=2, fontsize="small")
    ax_time.set_xlabel("wall time (s)")
    gib = 2.0 ** 30
    ax_mem.barh(y - 0.2, [r.client_bytes / gib for r in rows], height=0.4, color=BEFORE,
                label="client")
    ax_mem.barh(y + 0.2, [r.worker_bytes / gib for r in rows], height=0.4, color=SPIKES,
                label="largest worker")
    ax_mem.set_xlabel("peak memory (GiB)")
    ax_mem.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False,
                  fontsize="small")
    ax_time.margins(x=0.12)
    ax_time.set_yticks(y, names)
    ax_time.invert_yaxis()
    for ax in (ax_time, ax_mem):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
