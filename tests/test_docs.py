"""The documentation: the site builds with ``mkdocs build --strict``; every example runs.

Rules for fenced blocks in docs/*.md and README.md (each page runs in its own tmp dir):

- ```` ```python ````: a page's blocks run in order in one fresh Python process, so a
  block may use what an earlier block of the same page defined.
- ```` ```console ```` / ```` ```bash ````: lines starting with ``$ `` are commands
  (a trailing ``\\`` continues one); other lines are shown output. ``pip install`` and
  ``python -m pytest`` commands are checked (the extras, groups and test files they name
  exist), not run: the test runs inside that environment and suite.
- ```` ```yaml ```` / ```` ```json ````: a ``caiman-dask:`` config is validated against
  caiman_dask/caiman-dask-schema.yaml; a Kubernetes object with tests/k8s_check.py;
  anything else must be parameter groups that ``RunParams.from_dict`` accepts.
- A first line ``# requires: NAME[, NAME]`` (slurm, sge, kubernetes, caiman, s3, slow) runs the
  block only where that is available; a block importing ``caiman`` requires caiman.
  ``slow`` blocks (benchmarks, full-size runs) run when ``CAIMAN_DASK_DOCS_SLOW=1``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from typing import Any

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [REPO / "README.md"]
SHARED = pathlib.Path(os.environ.get("CAIMAN_DASK_SHARED", REPO.parent / "shared"))
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
REQUIRES = re.compile(r"^\s*#\s*requires:\s*([\w, -]+)$")
IMPORTS_CAIMAN = re.compile(r"^\s*(?:from|import)\s+caiman(?:\.|\s|$)", re.MULTILINE)
pytestmark = pytest.mark.slow  # end-to-end: run once in CI (newest releases), not twice
KNOWN_REQUIREMENTS = {"slurm", "sge", "kubernetes", "caiman", "slow", "s3"}
SHELL, PYTHON, DATA = {"bash", "console", "sh", "shell"}, {"python", "py"}, {"yaml", "json"}
RUNNER = r"""
import json, sys, traceback
proto, sys.stdout = sys.stdout, sys.stderr
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    block = json.loads(line)
    try:
        exec(compile(block["code"], block["name"], "exec"), namespace)
        result = {"ok": True}
    except BaseException:
        result = {"ok": False, "error": traceback.format_exc()}
    proto.write(json.dumps(result) + "\n")
    proto.flush()
"""


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    lang: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def requires(self) -> frozenset[str]:
        first = self.text.splitlines()[0] if self.text.strip() else ""
        match = REQUIRES.match(first)
        names = {n.strip() for n in match.group(1).split(",")} if match else set()
        if self.lang in PYTHON and IMPORTS_CAIMAN.search(self.text):
            names.add("caiman")
        return frozenset(names)


def page_blocks(path: pathlib.Path) -> list[Block]:
    """Every fenced block of a markdown file, in order."""
    text = path.read_text()
    return [Block(path.name, text.count("\n", 0, m.start()) + 1, m.group(1).lower(),
                  m.group(2)) for m in FENCE.finditer(text)]


HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")


def shell_commands(text: str) -> list[str]:
    """The ``$ `` commands of a console block, continuation and here-document lines joined."""
    commands: list[str] = []
    pending, until = "", None
    for line in text.splitlines():
        if pending:
            pending += "\n" + line
            if until is not None:
                if line.strip() != until:
                    continue
                until = None
        elif line.startswith("$ "):
            pending = line[2:]
            heredoc = HEREDOC.search(pending)
            until = heredoc.group(1) if heredoc else None
            if until is not None:
                continue
        else:
            continue
        if not pending.endswith("\\"):
            commands.append(pending)
            pending = ""
    return commands


# -- what can run here ---------------------------------------------------------------------

def _command_works(*argv: str) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing(requirement: str) -> str | None:
    """Why ``requirement`` is not available here, or None when it is."""
    forced = os.environ.get("CAIMAN_DASK_REQUIRE_SCHEDULERS") == "1"
    if requirement == "caiman":
        return None if importlib.util.find_spec("caiman") else "CaImAn is not importable"
    if requirement == "slurm":
        return None if forced or _command_works("sinfo") else "no reachable SLURM (sinfo)"
    if requirement == "sge":
        return None if forced or _command_works("qstat") else "no reachable Grid Engine (qstat)"
    if requirement == "slow":
        slow = os.environ.get("CAIMAN_DASK_DOCS_SLOW") == "1"
        return None if slow else "slow example: set CAIMAN_DASK_DOCS_SLOW=1"
    if requirement == "s3":
        return None if os.environ.get("AWS_ACCESS_KEY_ID") else \
            "no object-storage credentials (AWS_ACCESS_KEY_ID)"
    if requirement == "kubernetes":
        return None if _command_works("kubectl", "get", "daskclusters") else \
            "no Kubernetes cluster with the dask operator (kubectl get daskclusters)"
    return f"unknown requirement {requirement!r}"


def skip_reason(block: Block) -> str | None:
    """Why ``block`` cannot run here (data blocks always can: they are checked offline)."""
    if block.lang in DATA:
        return None
    reasons = [r for r in map(missing, sorted(block.requires)) if r]
    return "; ".join(reasons) or None


# -- running a page ------------------------------------------------------------------------

def _env() -> dict[str, str]:
    return dict(os.environ, CAIMAN_DASK_SHARED=str(SHARED))


class PageRun:
    """Runs one page's blocks in order in a tmp dir (python blocks in one process)."""

    def __init__(self, workdir: pathlib.Path):
        self.workdir, self.proc = workdir, None
        self.log = workdir.parent / f"{workdir.name}.stderr.log"
        self.log_file: Any = None

    def python(self, block: Block) -> None:
        if self.proc is None:
            self.log_file = self.log.open("w")
            self.proc = subprocess.Popen(
                [sys.executable, "-c", RUNNER], cwd=self.workdir, env=_env(), text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file)
        self.proc.stdin.write(json.dumps({"code": block.text, "name": block.name}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        result = json.loads(reply) if reply else {"ok": False, "error": "the process died"}
        assert result["ok"], f"{block.name} failed:\n{result['error']}\n{self._tail()}"

    def shell(self, block: Block) -> None:
        for command in shell_commands(block.text):
            if check_only(command, block):
                continue
            cwd = REPO if "slow" in block.requires else self.workdir  # benchmarks
            done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd,
                                  env=_env(), capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (f"{block.name}: `{command}` exited with "
                                          f"{done.returncode}:\n{done.stdout[-3000:]}\n"
                                          f"{done.stderr[-3000:]}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=120)
            self.proc.stdout.close()
            self.log_file.close()

    def _tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


def check_only(command: str, block: Block) -> bool:
    """Check ``pip install`` / ``pytest`` commands instead of running them; True if so."""
    words = shlex.split(command.replace("\\\n", " "))
    if "pip" in words and "install" in words:
        _check_pip(words, block)
        return True
    if "pytest" in words:
        for word in words[words.index("pytest") + 1:]:
            if not word.startswith("-"):
                assert (REPO / word.split("::")[0]).exists(), f"{block.name}: no {word}"
        return True
    return False


def _check_pip(words: list[str], block: Block) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    if "--group" in words:
        group = words[words.index("--group") + 1]
        assert group in project["dependency-groups"], f"{block.name}: no group {group!r}"
    for word in words:
        extras = re.fullmatch(r"(?:caiman-dask|\.|-e)\[([\w,-]+)\]", word)
        for extra in (extras.group(1).split(",") if extras else []):
            assert extra in project["project"]["optional-dependencies"], \
                f"{block.name}: no extra {extra!r}"


def check_data(block: Block) -> None:
    """Validate a YAML / JSON block (see the module docstring)."""
    docs = list(yaml.safe_load_all(block.text)) if block.lang == "yaml" else \
        [json.loads(block.text)]
    for doc in docs:
        assert isinstance(doc, dict), f"{block.name}: expected a mapping"
        if "caiman-dask" in doc:
            import jsonschema

            from caiman_dask import config
            jsonschema.validate(doc["caiman-dask"],
                                yaml.safe_load(config.SCHEMA_FILE.read_text()))
        elif "apiVersion" in doc:
            k8s_check = pytest.importorskip("k8s_check")
            assert not k8s_check.object_errors(doc), f"{block.name}: invalid object"
        else:
            from caiman_dask.pipeline import RunParams

            RunParams.from_dict(doc)


def run_page(path: pathlib.Path, workdir: pathlib.Path) -> list[str]:
    """Run every block of a page that can run here; return the skipped blocks."""
    runner, skipped = PageRun(workdir), []
    try:
        for block in page_blocks(path):
            reason = skip_reason(block)
            if reason:
                skipped.append(f"{block.name}: {reason}")
            elif block.lang in PYTHON:
                runner.python(block)
            elif block.lang in SHELL:
                runner.shell(block)
            elif block.lang in DATA:
                check_data(block)
    finally:
        runner.close()
    return skipped


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_examples_run(path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    runnable = [b for b in page_blocks(path) if b.lang in PYTHON | SHELL | DATA]
    if not runnable:
        pytest.skip(f"{path.name} has no code examples")
    skipped = run_page(path, workdir)
    if len(skipped) == len(runnable):
        pytest.skip("every example needs what is missing here: " + "; ".join(skipped))


# -- static rules --------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_every_block_can_be_checked(path: pathlib.Path) -> None:
    """Code blocks have a language; shell blocks have ``$ `` commands; markers are known."""
    for block in page_blocks(path):
        assert block.lang, f"{block.name}: give the block a language (python, console, text...)"
        assert block.requires <= KNOWN_REQUIREMENTS, f"{block.name}: {set(block.requires)}"
        if block.lang in SHELL and path.name != "README.md":
            assert shell_commands(block.text), (f"{block.name}: start commands with '$ ' "
                                                "so the docs test can run them")


def test_readme_commands_are_checked() -> None:
    """The README's commands (no ``$ ``: copied as they are) are pip + CLI commands that
    work: installs are checked, and each ``caiman-dask`` subcommand exists."""
    for block in page_blocks(REPO / "README.md"):
        if block.lang not in SHELL:
            continue
        for command in block.text.strip().split("&&"):
            words = shlex.split(command)
            if words[0] == "caiman-dask":
                done = subprocess.run([*words[:2], "--help"], capture_output=True, text=True,
                                      env=_env(), timeout=120)
                assert done.returncode == 0, done.stderr
            else:
                assert check_only(command, block), f"{block.name}: unchecked `{command}`"


# -- the site ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The site built with ``mkdocs build --strict`` (warnings are errors)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e . --group test")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _hook() -> Any:
    spec = importlib.util.spec_from_file_location("param_tables",
                                                  DOCS / "_hooks" / "param_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_with_every_page(site: pathlib.Path) -> None:
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    listed = set(re.findall(r"[\w.-]+\.md", json.dumps(nav)))
    assert listed == {p.name for p in DOCS.glob("*.md")}, "mkdocs.yml nav != docs/*.md"
    for name in listed:
        page = site / ("index.html" if name == "index.md" else f"{name[:-3]}/index.html")
        assert page.stat().st_size > 2000, page


def test_parameter_page_lists_every_key(site: pathlib.Path) -> None:
    html = (site / "parameters" / "index.html").read_text()
    hook = _hook()
    names = [*hook.cnmf_groups(), "config"]
    for name in names:
        rows = hook.config_rows() if name == "config" else hook.group_rows(name)
        for key, _, meaning in rows:
            assert f"<td><code>{key}</code></td>" in html, f"{name}.{key} missing from the page"
            assert meaning, f"{name}.{key}: no meaning (docs/_hooks/param_tables.py MEANINGS)"
