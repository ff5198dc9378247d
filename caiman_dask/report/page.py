"""The report's HTML: one self-contained page (inline CSS, no scripts, no external URLs).

Pure string building: :func:`render_page` takes what :func:`caiman_dask.report.write_report`
gathered and returns the page; every value is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from caiman_dask.report.inputs import StageRow

#: Written into every file the report owns; a file without it is never overwritten.
GENERATOR = "caiman-dask report"

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px;
       color: #222; background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; } img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.92em; } .pair { display: flex; flex-wrap: wrap; gap: 1em; }
.pair figure { flex: 1 1 560px; }
"""


@dataclass(frozen=True)
class Picture:
    """A PNG of the report: ``report/<name>``, its size in pixels and its caption."""

    name: str
    title: str
    caption: str
    width: int
    height: int

    @property
    def href(self) -> str:
        """Path relative to ``report.html``."""
        return f"report/{self.name}"


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, (list, tuple, dict)):
        value = json.dumps(value, default=str)
    return f"<td>{html.escape(str(value))}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned, everything escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>\n" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"


def section(title: str, content: str) -> str:
    """A titled section (empty string when there is no content)."""
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{content}</section>\n" if content else ""


def figure(picture: Picture) -> str:
    """An ``<img>`` with its size and caption."""
    return (f'<figure><img src="{html.escape(picture.href)}" width="{picture.width}" '
            f'height="{picture.height}" alt="{html.escape(picture.title)}">'
            f"<figcaption>{html.escape(picture.caption)}</figcaption></figure>\n")


def overview_rows(summary: dict[str, Any], facts: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows of the overview table: the run's inputs, size, duration and components."""
    rows: list[tuple[str, Any]] = [(k, v) for k, v in facts.items() if v is not None]
    for key in ("inputs", "outdir", "seconds", "dashboard"):
        if summary.get(key) is not None:
            rows.append((key, summary[key]))
    return rows


def score_rows(scores: dict[str, Any] | None) -> list[list[Any]]:
    """One row per scoring criterion of the summary's ``scores``."""
    keys = ("n_true", "n_found", "n_matched", "precision", "recall", "f1")
    return [[name] + [info.get(k) for k in keys] for name, info in (scores or {}).items()]


def stage_rows(stages: list[StageRow]) -> list[list[Any]]:
    """One row per stage: seconds, skipped, peak memory in MiB."""
    mib = 2.0 ** 20
    return [[s.name, s.seconds, s.skipped, round(s.client_bytes / mib, 1),
             round(s.worker_bytes / mib, 1)] for s in stages]


def param_rows(params: dict[str, Any] | None) -> list[list[Any]]:
    """``group / name / value`` rows of a nested parameter dict (CaImAn's groups)."""
    rows: list[list[Any]] = []
    for group, values in (params or {}).items():
        if isinstance(values, dict):
            rows.extend([group, name, value] for name, value in values.items())
        else:
            rows.append(["", group, values])
    return rows


def render_page(*, summary: dict[str, Any], facts: dict[str, Any],
                counts: list[tuple[str, Any]], pictures: list[Picture],
                stages: list[StageRow]) -> str:
    """The whole page.

    Parameters
    ----------
    summary : dict
        The run summary (``scores``, ``params``, ``versions`` and the overview keys).
    facts : dict
        Overview facts computed by the writer (frames, frame size, frame rate).
    counts : list of (str, value)
        Component counts.
    pictures : list of Picture
        The PNGs, in page order (the first two side by side).
    stages : list of StageRow
        Per-stage timings and memory.

    Returns
    -------
    str
    """
    pics = "".join(figure(p) for p in pictures[2:])
    pair = '<div class="pair">' + "".join(figure(p) for p in pictures[:2]) + "</div>\n"
    parts = [
        section("Overview", table(("item", "value"), overview_rows(summary, facts))),
        section("Components", table(("count", "value"), counts) if counts else ""),
        section("Scores against manual ROIs", table(
            ("criterion", "true", "found", "matched", "precision", "recall", "F1"),
            score_rows(summary.get("scores"))) if summary.get("scores") else ""),
        section("Pictures", pair + pics if pictures else ""),
        section("Timings and memory", table(
            ("stage", "seconds", "skipped", "client peak (MiB)", "largest worker peak (MiB)"),
            stage_rows(stages)) if stages else ""),
        section("Parameters", table(("group", "name", "value"),
                                    param_rows(summary.get("params")))
                if summary.get("params") else ""),
        section("Versions", table(("package", "version"),
                                  sorted((summary.get("versions") or {}).items()))),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta name="generator" content="{GENERATOR}">\n'
            "<title>caiman-dask report</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>caiman-dask report</h1>\n"
            + "".join(parts) + "</body>\n</html>\n")
