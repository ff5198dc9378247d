"""Generate benchmarks/README.md from the suite's JSON only (``suite_*.json``).

One table per case, then the targets as ratios measured in the same run with PASS / MISS.
A case that was skipped or failed is shown as such, with its reason; its targets are
``n/a``, never PASS.

Run: ``python benchmarks/table.py [--results DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.scaling_model import fit_offset_exponent  # noqa: E402

CASES = ("pipeline", "caiman", "suite2p", "dview", "memory", "growth")
TITLES = {"pipeline": "1. Main job: serial vs LocalCluster 1 and 2 workers",
          "caiman": "2. CaImAn's own pipeline: multiprocessing Pool vs our dview",
          "suite2p": "3. Suite2p registration + detection vs our pipeline (F1 vs manual ROIs)",
          "dview": "4. Scheduler and dview overhead per task",
          "memory": "5. Peak memory as the movie grows 1x, 4x, 16x",
          "growth": "6. Cost growth: time vs frames and field of view"}


@dataclass(frozen=True)
class Target:
    """One target: what, the measured value, the goal, and whether it is met (None: n/a)."""

    name: str
    value: float | None
    goal: str
    met: bool | None

    @property
    def verdict(self) -> str:
        """PASS, MISS or n/a."""
        return "n/a" if self.met is None else ("PASS" if self.met else "MISS")


def at_least(name: str, value: float | None, low: float) -> Target:
    """Target ``value >= low``."""
    return Target(name, value, f">= {low:g}", None if value is None else value >= low)


def at_most(name: str, value: float | None, high: float) -> Target:
    """Target ``value <= high``."""
    return Target(name, value, f"<= {high:g}", None if value is None else value <= high)


def within(name: str, value: float | None, low: float, high: float) -> Target:
    """Target ``low <= value <= high``."""
    return Target(name, value, f"{low:g} .. {high:g}",
                  None if value is None else low <= value <= high)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 2**20


def pipeline_case(d: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Case 1: seconds per mode and movie, F1 on neurofinder, speedup targets."""
    rows, targets = [], []
    for movie in ("neurofinder", "synthetic"):
        m = d[movie]
        for mode, s in m["seconds"].items():
            f1 = m["runs"][mode][0].get("scores", {}).get("centroid", {}).get("f1")
            rows.append([movie, "x".join(map(str, m["shape"])), mode, s["min"], s["median"],
                         s["max"], s["n"], f1])
        targets.append(at_least(f"{movie}: 2 workers / serial speedup",
                                m["ratios"]["speedup_2w"], d["targets"]["speedup_2w_min"]))
    head = ["movie", "TxYxX", "mode", "min s", "median s", "max s", "reps", "F1 (centroid)"]
    return md_table(head, rows) + ceiling_lines(d.get("two_core_ceiling")), targets


def ceiling_lines(ceiling: dict[str, Any] | None) -> list[str]:
    """The machine's two-core speedup per kernel, measured in the same run (ceiling.py)."""
    if not ceiling:
        return []
    kernels = ", ".join(f"{name} {_fmt(k['two_core_speedup'])}x"
                        for name, k in ceiling.items())
    return ["", "Two-core ceiling of this machine in the same run (the same kernel alone vs "
            f"two copies at once, `benchmarks/ceiling.py`): {kernels}."]


def caiman_case(d: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Case 2: CaImAn with its Pool and with our dview, and our pipeline."""
    rows = [[name, r["seconds"], r.get("reps", 1), r.get("f1")] for name, r in d["runs"].items()]
    if d.get("ours_error"):
        rows.append(["ours", "failed: " + d["ours_error"], None, None])
    if d.get("dview_skipped"):
        rows.append(["caiman_dview", "skipped: " + d["dview_skipped"], None, None])
    r = d["ratios"]
    targets = [at_most("ours / CaImAn (Pool) seconds", r.get("ours_over_caiman"), 1.0),
               at_least("F1 ours - CaImAn", r.get("f1_ours_minus_caiman"), 0.0)]
    targets += [at_most(f"our dview / Pool, stage {k}", v, 1.0)
                for k, v in r.get("dview_over_pool", {}).items()]
    return md_table(["run", "seconds (median stages)", "reps", "F1 (centroid)"], rows), targets


def suite2p_case(d: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Case 3: Suite2p and ours on the same movie, F1 under both criteria."""
    rows = [[name, r.get("seconds"), r.get("n_rois"), r["scores"]["centroid"]["f1"],
             r["scores"]["iou"]["f1"]] for name, r in d["runs"].items()]
    return md_table(["pipeline", "seconds", "ROIs", "F1 centroid", "F1 IoU"], rows), []


def dview_case(d: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Case 4: per-task overhead and the motion-block task, Pool vs dview."""
    rows = [[name, d[name]["noop_default_chunks"]["ms_per_task"],
             d[name]["noop_chunksize_1"]["ms_per_task"], d[name]["mc_block"]["median"]]
            for name in ("pool", "dask", "dask_default_malloc", "dask_no_queuing") if name in d]
    targets = [at_most("dask ms per no-op task (chunksize 1)",
                       d["dask"]["noop_chunksize_1"]["ms_per_task"],
                       d["targets"]["ms_per_task_max"]),
               at_most("dview / Pool, motion block", d["ratios"]["mc_block_dask_over_pool"],
                       d["targets"]["mc_block_dask_over_pool_max"])]
    if "dask_no_queuing" in d:
        targets.insert(1, at_most("dask ms per no-op task (chunksize 1), queuing off",
                                  d["dask_no_queuing"]["noop_chunksize_1"]["ms_per_task"],
                                  d["targets"]["ms_per_task_max"]))
    head = ["runner", "ms/task (default chunks)", "ms/task (chunksize 1)", "mc block median s"]
    return md_table(head, rows), targets


def memory_case(d: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Case 5: peak RSS per worker and client by movie length."""
    rows = [[f"{k}x", r["movie"]["frames"], _mb(w), _mb(c), r["seconds"]]
            for k, r, w, c in zip(d["lengths"], d["runs"], d["peak_worker_rss"],
                                  d["peak_client_rss"], strict=True)]
    targets = [at_most(f"peak worker RSS 16x / 1x (limit {d['memory_limit']})",
                       d["ratios"]["worker_peak_16x_over_1x"],
                       d["targets"]["worker_peak_16x_over_1x_max"])]
    head = ["length", "frames", "peak worker MiB", "peak client MiB", "seconds"]
    return md_table(head, rows), targets


def growth_case(d: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """Case 6: seconds by frames and by field of view, fitted exponents."""
    rows = [[r["movie"]["frames"], "x".join(map(str, r["movie"]["dims"])), r["seconds"]]
            for r in d["frames_runs"] + d["fov_runs"]]
    lines = md_table(["frames", "YxX", "seconds (1 worker)"], rows) + [""]
    lines += md_table(["stage", "exponent vs frames", "exponent vs pixels"],
                      [[k, v, d["exponent_vs_pixels"].get(k)]
                       for k, v in d["exponent_vs_frames"].items()])
    low, high = d["targets"]["exponent_vs_frames"]
    targets = [within("time exponent vs frames", d["exponent_vs_frames"]["total"], low, high)]
    frames = [r["movie"]["frames"] for r in d["frames_runs"]]
    if len(set(frames)) >= 3:
        fixed, per_frame = fit_offset_exponent(frames,
                                               [r["seconds"] for r in d["frames_runs"]])
        lines += ["", f"Fitted as seconds = a + b * frames^k: fixed cost a = {fixed:.2f} s, "
                  f"k = {per_frame:.2f} (the plain log-log slope includes the fixed cost)."]
        targets.append(within("time exponent vs frames, fixed cost fitted", per_frame,
                              low, high))
    return lines, targets


SECTIONS: dict[str, Callable[[dict[str, Any]], tuple[list[str], list[Target]]]] = {
    "pipeline": pipeline_case, "caiman": caiman_case, "suite2p": suite2p_case,
    "dview": dview_case, "memory": memory_case, "growth": growth_case}


def machine_line(d: dict[str, Any]) -> str:
    """CPUs, memory, load before/after and versions of one case's run."""
    m = d.get("machine", {})
    before, after = d.get("load_before"), m.get("load_average")
    load = lambda v: "-" if v is None else "/".join(f"{x:.1f}" for x in v)  # noqa: E731
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    kind = "quick smoke run (small movies), " if d.get("quick") else ""
    return (f"_{kind}{m.get('time', '?')}, {m.get('cpus_usable', '?')} CPUs, "
            f"{(m.get('memory_usable') or 0) / 2**30:.1f} GiB, load 1/5/15 min before "
            f"{load(before)}, after {load(after)}; {versions}_")


def render(results: dict[str, dict[str, Any]]) -> str:
    """The README text for the cases in ``results`` (name -> JSON payload)."""
    out = ["# Benchmarks", "", "Generated by `python benchmarks/table.py` from "
           "`benchmarks/results/suite_*.json` (run `python benchmarks/run_all.py`; "
           "`--quick` for a smoke run). Do not edit by hand.", ""]
    targets: list[Target] = []
    for case in CASES:
        out += [f"## {TITLES[case]}", ""]
        d = results.get(case)
        if d is None or "skipped" in d or "error" in d:
            reason = "not run" if d is None else d.get("skipped") or f"failed: {d['error']}"
            out += [f"Skipped: {reason}", ""]
            continue
        try:
            lines, found = SECTIONS[case](d)
        except (KeyError, TypeError, IndexError) as exc:
            out += [f"Malformed result ({type(exc).__name__}: {exc}): rerun this case", ""]
            continue
        targets += found
        out += [machine_line(d), ""] + lines + [""]
    out += ["## Targets (ratios measured in the same run)", ""]
    out += md_table(["target", "measured", "goal", "verdict"],
                    [[t.name, t.value, t.goal, t.verdict] for t in targets])
    return "\n".join(out) + "\n"


def load_results(folder: pathlib.Path) -> dict[str, dict[str, Any]]:
    """``suite_<case>.json`` of ``folder`` by case name."""
    return {case: json.loads((folder / f"suite_{case}.json").read_text())
            for case in CASES if (folder / f"suite_{case}.json").exists()}


def main(argv: list[str] | None = None) -> None:
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default=str(here / "results"))
    parser.add_argument("--out", default=str(here / "README.md"))
    opts = parser.parse_args(argv)
    pathlib.Path(opts.out).write_text(render(load_results(pathlib.Path(opts.results))))
    print(opts.out)


if __name__ == "__main__":
    main()
