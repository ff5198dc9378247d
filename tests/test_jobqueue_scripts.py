"""Job scripts of the batch-system backends, checked as text (no batch system needed)."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys

import dask.config
import pytest
from distributed.security import Security

from caiman_dask.cluster import BACKENDS, resolve_settings
from caiman_dask.cluster.jobqueue import KINDS, lifetime_args, walltime_seconds
from caiman_dask.errors import ConfigError, ParameterError

pytest.importorskip("dask_jobqueue")

#: per kind: directive patterns for 2 processes x 2 threads, 1 GiB each, walltime 2 h.
DIRECTIVES = {
    "slurm": [r"#SBATCH --cpus-per-task=4\b", r"#SBATCH --mem=2G\b", r"#SBATCH -t 02:00:00",
              r"#SBATCH -p short\b", r"#SBATCH -A lab42\b"],
    "pbs": [r"#PBS -l select=1:ncpus=4:mem=2048MB", r"#PBS -l walltime=02:00:00",
            r"#PBS -q short\b", r"#PBS -A lab42\b"],
    "sge": [r"#\$ -l h_rt=02:00:00", r"#\$ -q short\b", r"#\$ -P lab42\b", r"#\$ -S /bin/bash"],
    "lsf": [r"#BSUB -n 4\b", r"#BSUB -M 2147484\b", r"#BSUB -W 02:00\b", r"#BSUB -q short\b",
            r'#BSUB -P "lab42"'],
    "htcondor": [r"MY\.DaskWorkerCores = 4\b", r"MY\.DaskWorkerMemory = 2147483648\b"],
}


def dask_config_of(script: str) -> dict:
    """The dask config a worker of ``script`` reads from its exported ``DASK_*`` variables,
    parsed by dask itself."""
    env = {}
    for line in script.splitlines():
        words = shlex.split(line) if line.startswith("export DASK_") else []
        if len(words) == 2:
            name, _, value = words[1].partition("=")
            env[name] = value
    assert env, script
    return dask.config.collect_env(env)


def job_script(kind: str, **options) -> str:
    """The job script of ``kind`` for 4 workers (2 per job) x 2 threads, 1 GiB each."""
    settings = resolve_settings(4, threads_per_worker=2, memory_limit="1GiB")
    spec = BACKENDS[kind](settings, processes=2, walltime="02:00:00", scheduler_host="127.0.0.1",
                          **options)
    assert spec.settings.n_workers == 4 and spec.options["jobs"] == 2
    cls = getattr(importlib.import_module("dask_jobqueue"), spec.options["cls_name"])
    with cls(**spec.options["options"]) as cluster:
        return cluster.job_script()


@pytest.fixture
def shared(tmp_path):
    with dask.config.set({"caiman-dask.jobqueue.shared-temp-directory": str(tmp_path)}):
        yield tmp_path


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_script_carries_size_threads_memory_malloc_fix_and_tls(kind, shared):
    extra = {} if kind == "htcondor" else {"queue": "short"}
    if kind != "htcondor":
        extra["account"] = "lab42"
    script = job_script(kind, **extra)
    for pattern in DIRECTIVES[kind]:
        assert re.search(pattern, script), (pattern, script)
    assert "--nthreads 2" in script and "--memory-limit 1.00GiB" in script
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "OPENCV_FOR_THREADS_NUM"):
        assert f"export {name}=2" in script
    assert "unset MALLOC_TRIM_THRESHOLD_" in script
    if kind != "htcondor":  # its prologue is one quoted argument, not script lines
        worker = dask_config_of(script)
        assert dask.config.get("distributed.nanny.pre-spawn-environ",
                               config=worker) == {"MALLOC_TRIM_THRESHOLD_": None}
        assert dask.config.get("distributed.worker.memory.terminate", config=worker) == 0.95
        assert dask.config.get("distributed.worker.profile.enabled", config=worker) is False
        assert dask.config.get("distributed.admin.tick.interval", config=worker) == "1.0s"
    assert "DASK_CONFIG" not in script and "mktemp" not in script  # nothing left on the node
    # lifetime: 2 h walltime -> end 10% early, staggered over 5%
    assert "--lifetime 6120s --lifetime-stagger 360s" in script
    assert re.search(r"tls://[\d.]+:\d+", script) and "--protocol tls://" in script
    for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):
        path = re.search(flag + r" (\S+?)['\"]?(\s|$)", script).group(1)
        assert os.path.dirname(path) == str(shared) and flag in script


def test_config_precedence_argument_then_kind_then_common(shared):
    with dask.config.set({"caiman-dask.jobqueue.queue": "common",
                          "caiman-dask.jobqueue.slurm.queue": "kind-q",
                          "caiman-dask.jobqueue.job-script-prologue": ["module load python"]}):
        script = job_script("slurm")
        assert "#SBATCH -p kind-q" in script and "module load python" in script
        assert "#SBATCH -p given" in job_script("slurm", queue="given")
        assert "#PBS -q common" in job_script("pbs")


def test_plain_tcp_when_tls_is_off():
    script = job_script("slurm", security=False)
    assert re.search(r"dask_worker tcp://", script) and "--tls" not in script


def test_users_own_certificates_are_used(tmp_path):
    temp = Security.temporary()
    files = {}
    for key, pem in (("tls-ca-file", temp.tls_ca_file), ("tls-cert", temp.tls_worker_cert),
                     ("tls-key", temp.tls_worker_key)):
        files[key] = tmp_path / f"{key}.pem"
        files[key].write_text(pem)
    with dask.config.set({f"caiman-dask.jobqueue.{k}": str(v) for k, v in files.items()}):
        script = job_script("sge")
    assert f"--tls-ca-file {files['tls-ca-file']}" in script
    assert f"--tls-key {files['tls-key']}" in script
    with dask.config.set({"caiman-dask.jobqueue.tls-cert": str(files["tls-cert"])}), \
            pytest.raises(ParameterError, match="tls-ca-file, tls-key not given"):
        job_script("sge")


def test_bad_options_name_what_to_change(shared):
    with dask.config.set({"caiman-dask.jobqueue.slurm.queu": "x"}), \
            pytest.raises(ConfigError, match="unknown key.*queu"):
        job_script("slurm")
    with pytest.raises(ParameterError, match="walltime='2h'"):
        walltime_seconds("2h")
    with pytest.raises(ParameterError, match="adapt=2 is below the 4 workers"):
        job_script("pbs", adapt=2)
    with pytest.raises(ParameterError, match="'htcondor' has no queue"):
        job_script("htcondor", queue="short")


def test_walltime_and_lifetime_arithmetic():
    assert walltime_seconds("1-02:03:04") == 93784
    assert walltime_seconds("00:30") == 1800
    assert lifetime_args("00:05:00", True) == []  # too short to stagger
    assert lifetime_args("10:00:00", False) == []
    assert lifetime_args("10:00:00", True) == ["--lifetime", "30600s", "--lifetime-stagger",
                                               "1800s"]


def test_without_dask_jobqueue_the_backends_name_the_install_hint():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'dask_jobqueue':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import caiman_dask\n"
        "from caiman_dask.errors import BackendError\n"
        "try:\n"
        "    caiman_dask.setup_cluster('slurm', 1)\n"
        "except BackendError as exc:\n"
        "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "backend 'slurm' needs an optional dependency" in out
    assert 'pip install "caiman-dask[jobqueue]"' in out
