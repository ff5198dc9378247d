"""The report's inputs as small validated dataclasses, built from plain dicts and arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from caiman_dask.errors import ParameterError

MOTION_KEYS = frozenset({"rigid_shifts", "pw_shifts", "flags", "metrics", "template",
                         "offset", "path"})


@dataclass(frozen=True, eq=False)
class QualityCurve:
    """One movie's motion quality: per-frame correlation with the mean, crispness."""

    correlations: np.ndarray
    crispness: float

    @classmethod
    def from_any(cls, value: Any, where: str) -> QualityCurve:
        """From a dict ``{"correlations", "crispness"}`` or a ``MotionMetrics``."""
        get = value.get if isinstance(value, dict) else lambda k: getattr(value, k, None)
        corr, crisp = get("correlations"), get("crispness")
        if corr is None or crisp is None:
            raise ParameterError(f"{where} needs 'correlations' (per-frame array) and "
                                 f"'crispness' (a number), got {value!r:.80}")
        return cls(np.asarray(corr, dtype=np.float64).ravel(), float(crisp))


@dataclass(frozen=True, eq=False)
class MotionSummary:
    """What the report shows of motion correction.

    Attributes
    ----------
    rigid_shifts : ndarray
        (T, 2) rigid shifts (rows, columns) in pixels.
    pw_shifts : ndarray or None
        (T, ty, tx, 2) piecewise-rigid tile shifts.
    flags : ndarray or None
        (T,) per-frame flag bits (non-zero: flat, non-finite or at the shift bound).
    before, after : QualityCurve or None
        Motion metrics of the raw and the corrected movie.
    """

    rigid_shifts: np.ndarray
    pw_shifts: np.ndarray | None = None
    flags: np.ndarray | None = None
    before: QualityCurve | None = None
    after: QualityCurve | None = None

    @classmethod
    def from_dict(cls, motion: dict[str, Any]) -> MotionSummary:
        """From ``{"rigid_shifts", "pw_shifts"?, "flags"?, "metrics"?}`` (``metrics``: a
        ``MetricsComparison`` or ``{"before": ..., "after": ...}``); other keys of
        ``MotionResult`` (template, offset, path) are accepted and ignored."""
        unknown = set(motion) - MOTION_KEYS
        if unknown:
            raise ParameterError(f"motion: unknown keys {sorted(unknown)}; the report takes "
                                 f"{sorted(MOTION_KEYS)}")
        if motion.get("rigid_shifts") is None:
            raise ParameterError("motion: 'rigid_shifts' (a (T, 2) array) is required")
        rigid = np.asarray(motion["rigid_shifts"], dtype=np.float64)
        pw = motion.get("pw_shifts")
        pw = None if pw is None else np.asarray(pw, dtype=np.float64)
        _check_shape("rigid_shifts", rigid, (len(rigid), 2))
        if pw is not None:
            _check_shape("pw_shifts", pw, (len(rigid),) + pw.shape[1:3] + (2,))
        flags = motion.get("flags")
        flags = None if flags is None else np.asarray(flags).ravel()
        if flags is not None and len(flags) != len(rigid):
            raise ParameterError(f"motion: flags has {len(flags)} entries for "
                                 f"{len(rigid)} frames of rigid_shifts")
        before, after = _metrics(motion.get("metrics"))
        return cls(rigid, pw, flags, before, after)


def _check_shape(name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if value.shape != shape or value.ndim != len(shape):
        raise ParameterError(f"motion: {name} has shape {value.shape}, expected {shape} "
                             "(frames first, then rows/columns)")


def _metrics(metrics: Any) -> tuple[QualityCurve | None, QualityCurve | None]:
    if metrics is None:
        return None, None
    get = metrics.get if isinstance(metrics, dict) else lambda k: getattr(metrics, k, None)
    return tuple(None if get(k) is None else QualityCurve.from_any(get(k), f"motion metrics "
                                                                   f"'{k}'")
                 for k in ("before", "after"))  # type: ignore[return-value]


@dataclass(frozen=True)
class StageRow:
    """One stage of a run: wall time and peak memory (bytes) of the client and workers."""

    name: str
    seconds: float
    skipped: bool
    client_bytes: int
    worker_bytes: int

    @classmethod
    def rows(cls, stages: dict[str, Any] | None) -> list[StageRow]:
        """From the run summary's ``stages``: ``{name: {"seconds", "skipped",
        "peak_memory": {"client": bytes, "worker ...": bytes}}}``."""
        out = []
        for name, info in (stages or {}).items():
            peaks = info.get("peak_memory") or {}
            workers = [int(v) for k, v in peaks.items() if k != "client"]
            out.append(cls(str(name), float(info.get("seconds") or 0.0),
                           bool(info.get("skipped")), int(peaks.get("client", 0)),
                           max(workers, default=0)))
        return out
