"""Run the whole benchmark suite, side by side in one run, then write the tables.

Each case runs in its own Python process (native thread pools pinned before NumPy loads)
and writes ``RESULTS/suite_<case>.json``; a case that fails or times out is recorded as
``{"error": ...}`` and the suite goes on. Then ``table.py`` writes the README from the JSON
and, on a full run, ``scaling_model.py`` updates docs/scaling.md.

    python benchmarks/run_all.py              # full run (sized for < 30 min on 2 idle cores)
    python benchmarks/run_all.py --quick      # smoke run on small movies
    python benchmarks/run_all.py --caiman-python /work/caiman-venv/bin/python
    python benchmarks/run_all.py --only pipeline,memory

A quick run writes to ``benchmarks/results/quick/`` (README there too), never over the
full run's results.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = ("pipeline", "caiman", "suite2p", "dview", "memory", "growth")
TIMEOUT = {"quick": 600, "full": 1800}  # seconds per case
SUITE2P_PYTHON = "/tmp/s2p/bin/python"


def case_command(case: str, out: pathlib.Path, opts: argparse.Namespace) -> list[str]:
    """The command line that runs ``case`` and writes ``out``."""
    quick = ["--quick"] if opts.quick else []
    scripts = {"pipeline": ["case_pipeline.py"], "memory": ["case_growth.py", "memory"],
               "growth": ["case_growth.py", "growth"], "dview": ["dview_overhead.py"],
               "suite2p": ["case_suite2p.py", "--suite2p-python", opts.suite2p_python or ""],
               "caiman": ["case_caiman.py", "--caiman-python", opts.caiman_python or ""]}
    script, *args = scripts[case]
    return [sys.executable, str(HERE / script), *args, *quick, "--out", str(out)]


def run_process(cmd: list[str], out: pathlib.Path, timeout: float) -> str | None:
    """Run ``cmd`` in its own process group; None if it wrote ``out``, else the error.

    On timeout the whole group is killed (a case's Suite2p, CaImAn or cluster children too).
    """
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"timed out after {timeout:.0f} s"
    if proc.returncode == 0 and out.exists():
        return None
    return f"exit {proc.returncode}: " + " | ".join(stderr.strip().splitlines()[-3:])


def run_case(case: str, folder: pathlib.Path, opts: argparse.Namespace) -> dict:
    """Run one case; its JSON (with the load average before), or an error record."""
    out = folder / f"suite_{case}.json"
    out.unlink(missing_ok=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    cmd = case_command(case, out, opts)
    print(f"== {case}: {' '.join(cmd)}", flush=True)
    error = run_process(cmd, out, TIMEOUT["quick" if opts.quick else "full"])
    payload = json.loads(out.read_text()) if error is None else {"case": case, "error": error}
    payload.setdefault("load_before", load_before)
    payload.setdefault("case", case)
    payload.setdefault("quick", opts.quick)
    payload["wall_seconds"] = time.perf_counter() - start
    out.write_text(json.dumps(payload, indent=2))
    print(f"   {case}: {'ok' if error is None else error} "
          f"({payload['wall_seconds']:.0f} s)", flush=True)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small movies (smoke run)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--results", help="folder for the JSON (default benchmarks/results, "
                        "or benchmarks/results/quick with --quick)")
    parser.add_argument("--caiman-python", help="a Python where CaImAn imports")
    parser.add_argument("--suite2p-python", default=SUITE2P_PYTHON if os.path.exists(
        SUITE2P_PYTHON) else None, help=f"a Python where suite2p imports ({SUITE2P_PYTHON})")
    opts = parser.parse_args(argv)
    cases = opts.only.split(",") if opts.only else list(CASES)
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}: choose from {', '.join(CASES)}")
    folder = pathlib.Path(opts.results or HERE / "results" / ("quick" if opts.quick else ""))
    folder.mkdir(parents=True, exist_ok=True)
    failed = [c for c in cases if "error" in run_case(c, folder, opts)]
    readme = folder / "README.md" if opts.quick or opts.results else HERE / "README.md"
    subprocess.run([sys.executable, str(HERE / "table.py"), "--results", str(folder),
                    "--out", str(readme)], cwd=ROOT, check=True)
    if not opts.quick and (folder / "suite_pipeline.json").exists():
        subprocess.run([sys.executable, str(HERE / "scaling_model.py"), "--results",
                        str(folder), "--write", str(ROOT / "docs" / "scaling.md")],
                       cwd=ROOT, check=False)
    print(f"tables: {readme}; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
