"""mkdocs hook: the parameter tables of docs/parameters.md, generated from the code.

A line ``<!-- param-table: GROUP -->`` in a page becomes a table of that group's keys
with their defaults, read from ``caiman_dask.cnmf.param_groups``,
``caiman_dask.motion.params`` and, for ``config``, ``caiman_dask/caiman-dask.yaml`` with the
descriptions of ``caiman-dask-schema.yaml``. Meanings of the keys the built-in engine
uses are in ``MEANINGS``; tests/test_docs.py fails when a used key has none, or when a
key of the code is missing from the built page.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

MARKER = re.compile(r"^<!-- param-table: ([A-Za-z_]+) -->$", re.MULTILINE)
UNUSED_NOTE = "CaImAn's key: accepted and kept in params.json, not used by the built-in engine"

MEANINGS: dict[str, dict[str, str]] = {
    "data": {
        "fr": "imaging rate (Hz); taken from the movie's metadata when not given",
        "decay_time": "indicator decay time (s); sets the autoregressive model's time constant",
        "dxy": "pixel size (um) per axis, (rows, columns)",
    },
    "patch": {
        "rf": "patch half-size in pixels (a patch is 2*rf+1 wide); null: the whole frame is one "
              "patch",
        "stride": "overlap between neighbouring patches in pixels (CaImAn's name)",
        "border_pix": "pixels at the frame edges left out of every patch",
        "only_init": "patches only initialise components (no per-patch CNMF iterations)",
        "nb_patch": "background components per patch",
        "low_rank_background": "merge the patches' backgrounds into a global low-rank one",
        "skip_refinement": "skip the whole-frame refinement after merging",
        "n_processes": "ignored: the cluster decides (kept for CaImAn's files)",
    },
    "preprocess": {
        "noise_range": "frequency band (fraction of the frame rate, <= 0.5) whose PSD gives "
                       "pixel noise",
        "noise_method": "how the PSD in noise_range is averaged: mean, median or logmexp",
        "max_num_samples_fft": "longest stretch of frames used for the noise PSD",
        "lags": "autocovariance lags used to estimate the AR coefficients",
        "p": "order of the autoregressive model of the calcium dynamics",
    },
    "init": {
        "K": "components initialised per patch (or in the whole frame without patches)",
        "gSig": "expected neuron half-size in pixels (rows, columns)",
        "gSiz": "search window in pixels; null: 2*gSig+1",
        "nb": "global background components",
        "method_init": "initialisation method (greedy_roi)",
        "ssub": "spatial downsampling during initialisation",
        "tsub": "temporal downsampling during initialisation",
        "nIter": "rank-1 NMF iterations refining each initial component",
        "normalize_init": "normalise the movie by its noise before initialisation",
        "center_psf": "filter with the Gaussian kernel minus its mean (for one-photon data "
                      "with a large background)",
        "rolling_sum": "pick seeds from a rolling sum in time (finds sparse firing)",
        "rolling_length": "frames of that rolling sum",
        "max_init_frames": "caiman-dask extension: the search sees at most this many "
                           "time-averaged frames (a longer movie is averaged over more than "
                           "tsub frames; bounds its memory); null: no limit",
    },
    "spatial": {
        "nb": "background components in the spatial update",
        "extract_cc": "keep only the largest connected part of each thresholded footprint",
        "maxthr": "footprint pixels below this fraction of the maximum are zeroed",
        "nrgthr": "energy fraction kept when thresholding footprints (thr_method nrg)",
        "thr_method": "footprint thresholding: nrg or max",
        "update_background_components": "update the background in the spatial step",
    },
    "temporal": {
        "p": "order of the autoregressive model used for deconvolution (0: none)",
        "method_deconvolution": "deconvolution method (oasis)",
        "bas_nonneg": "constrain the trace baseline to be non-negative",
        "noise_method": "how the trace noise PSD is averaged",
        "noise_range": "frequency band used for the trace noise",
        "lags": "autocovariance lags for the AR coefficients",
        "fudge_factor": "shrinkage of the AR time constant (< 1 corrects a bias)",
        "s_min": "smallest spike kept by OASIS; null: no threshold",
        "ITER": "alternating spatial/temporal sweeps",
        "nb": "background components in the temporal update",
    },
    "merging": {
        "do_merge": "merge overlapping components whose traces correlate",
        "merge_thr": "trace correlation above which overlapping components are merged",
        "duplicate_thr": "caiman-dask extension: also merge components whose footprints have a "
                         "cosine similarity above this (null: CaImAn's rule only)",
    },
    "quality": {
        "min_SNR": "a component whose trace SNR reaches this is accepted",
        "rval_thr": "a component whose spatial correlation with the movie reaches this is "
                    "accepted",
        "use_cnn": "CNN classifier; must be false with the built-in engine",
        "SNR_lowest": "components below this SNR are rejected whatever else holds",
        "rval_lowest": "components below this spatial correlation are rejected",
        "min_area": "caiman-dask extension: reject footprints with fewer pixels than this "
                    "(null: off)",
    },
    "motion": {
        "max_shifts": "largest rigid shift searched (pixels, rows and columns)",
        "strides": "pw-rigid tile step in pixels (tile size strides + overlaps)",
        "overlaps": "overlap of neighbouring pw-rigid tiles in pixels",
        "max_deviation_rigid": "tile shifts stay within the rigid shift +- this",
        "upsample_factor_grid": "finer tiles for the Fourier-space pw shift field "
                                "(shifts_opencv false only)",
        "niter_rig": "rigid template refinement passes",
        "num_frames_split": "frames per motion-correction task (time block)",
        "pw_rigid": "piecewise-rigid correction after the rigid pass",
        "shifts_opencv": "apply shifts with OpenCV interpolation (false: Fourier space)",
        "border_nan": "pixels moved in from outside: true NaN, false 0, copy, min",
        "gSig_filt": "high-pass filter half-size for one-photon data (null: off)",
        "nonneg_movie": "shift the corrected movie to be non-negative",
        "min_mov": "the movie's minimum for nonneg_movie; null: the template's",
        "is3D": "volumetric correction (not implemented: must be false)",
        "indices": "cropping before registration (only the full frame is implemented)",
    },
}


def cnmf_groups() -> dict[str, tuple[type, tuple[str, ...]]]:
    """``{group: (dataclass, unused keys)}`` for every group we accept, motion included."""
    from caiman_dask.cnmf.param_groups import GROUPS
    from caiman_dask.motion.params import MotionParams

    groups = {name: (cls, tuple(cls.UNUSED)) for name, cls in GROUPS.items()}
    groups["motion"] = (MotionParams, tuple(MotionParams.UNUSED))
    return groups


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def _show(value: Any) -> str:
    if isinstance(value, slice):
        return "full" if value == slice(None) else repr(value)
    if isinstance(value, tuple) and all(isinstance(v, slice) for v in value):
        return "full frame" if all(v == slice(None) for v in value) else repr(value)
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def group_rows(name: str) -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` rows of one parameter group."""
    cls, unused = cnmf_groups()[name]
    meanings = MEANINGS.get(name, {})
    return [(f.name, _show(_default(f)),
             UNUSED_NOTE if f.name in unused else meanings.get(f.name, ""))
            for f in dataclasses.fields(cls)]


def config_rows() -> list[tuple[str, str, str]]:
    """``(key, default, description)`` rows of the package YAML, from its schema."""
    import yaml

    from caiman_dask import config

    defaults = yaml.safe_load(config.DEFAULTS_FILE.read_text())["caiman-dask"]
    schema = yaml.safe_load(config.SCHEMA_FILE.read_text())
    return list(_walk(defaults, schema, ""))


def _walk(values: dict[str, Any], schema: dict[str, Any], prefix: str):
    """Leaves of the YAML; a leaf without a description gets its parent's (memory.*)."""
    for key, value in values.items():
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict):
            inherited = {"description": sub.get("description", "")}
            sub = {**sub, "properties": {k: {**inherited, **v} for k, v in
                                         sub.get("properties", {}).items()}}
            yield from _walk(value, sub, f"{prefix}{key}.")
        else:
            yield (f"{prefix}{key}", _show(value), sub.get("description", ""))


def table(name: str) -> str:
    """The markdown table for one marker name (a parameter group, or ``config``)."""
    if name == "config":
        rows, header = config_rows(), "| `caiman-dask.` key | default | meaning |"
    else:
        rows, header = group_rows(name), f"| `{name}` key | default | meaning |"
    lines = [header, "|---|---|---|"]
    lines += [f"| `{key}` | {default} | {meaning} |" for key, default, meaning in rows]
    return "\n".join(lines)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace every ``<!-- param-table: NAME -->`` line by its generated table."""
    return MARKER.sub(lambda m: table(m.group(1)), markdown)
