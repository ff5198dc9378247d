"""The main job with its input, stores and results on S3 (a moto server on loopback).

Workers are ``dask worker`` processes started in their own empty working directory with
a private TMPDIR; an audit hook in each records every file it opens for writing (or
creates, renames, removes) outside that TMPDIR. The run must match the local-disk run
exactly, write nothing else, and leave the credentials in no file or object.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import distributed
import pytest
from estimates_check import assert_identical
from moto_server import moto_server

from caiman_dask.cli import main
from caiman_dask.demo import DEMO_PARAMS, make_demo_movie
from caiman_dask.errors import ConfigError
from caiman_dask.pipeline import run
from caiman_dask.results import load_estimates

pytestmark = pytest.mark.s3
BUCKET = "lab"

#: Preloaded into each worker: record writes outside the worker's own temp dir.
AUDIT = '''
import os, sys
ALLOWED = tuple(os.path.realpath(p) + os.sep for p in
                os.environ["CAIMAN_AUDIT_ALLOWED"].split(os.pathsep)) + ("/dev/", "/proc/")
WRITES = []
FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link",
          "os.truncate", "shutil.copyfile", "shutil.move", "shutil.rmtree"}

def _outside(path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False
    full = os.path.realpath(os.fsdecode(path))
    return not (full + os.sep).startswith(ALLOWED)

def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if mode else bool((flags or 0) & FLAGS)
        paths = [path] if writes else []
    else:
        paths = args[:2] if event in EVENTS else []
    WRITES.extend((event, os.fsdecode(p)) for p in paths if _outside(p))

sys.addaudithook(_hook)

def dask_setup(worker):
    worker.caiman_writes = WRITES
'''


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """Storage options (random credentials) of a fresh moto server with one bucket."""
    import s3fs

    with moto_server() as endpoint:
        options = {"key": "AKIA" + secrets.token_hex(8).upper(),
                   "secret": secrets.token_urlsafe(30), "endpoint_url": endpoint}
        s3fs.S3FileSystem(**options).mkdir(BUCKET)
        yield options


@contextlib.contextmanager
def _workers(base: pathlib.Path, n: int) -> Iterator[tuple[distributed.Client, list]]:
    """A scheduler and ``n`` audited worker processes, each in its own empty dirs."""
    base.mkdir()
    preload = base / "audit_preload.py"
    preload.write_text(AUDIT)
    dirs = [(base / f"w{i}" / "cwd", base / f"w{i}" / "tmp") for i in range(n)]
    procs = []
    with distributed.LocalCluster(n_workers=0, scheduler_port=0, dashboard_address=":0",
                                  processes=True) as cluster, \
            distributed.Client(cluster) as client:
        try:
            for cwd, tmp in dirs:
                cwd.mkdir(parents=True), tmp.mkdir(parents=True)
                env = {**os.environ, "TMPDIR": str(tmp), "CAIMAN_AUDIT_ALLOWED": str(tmp),
                       "PYTHONDONTWRITEBYTECODE": "1", "MPLCONFIGDIR": str(tmp / "mpl"),
                       "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1"}
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker",
                     cluster.scheduler_address, "--nthreads", "1", "--no-nanny",
                     "--no-dashboard", "--local-directory", str(tmp),
                     "--preload", str(preload)], cwd=cwd, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            client.wait_for_workers(n, timeout=60)
            yield client, dirs
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)


def _files(*roots: pathlib.Path) -> list[pathlib.Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_main_job_on_s3_with_workers_that_share_no_disk(tmp_path, s3, monkeypatch):
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    demo = make_demo_movie(tmp_path / "input", dims=(64, 64), n_frames=200, n_neurons=10,
                           seed=3)
    local, params = tmp_path / "local", tmp_path / "params.json"
    params.write_text(json.dumps(DEMO_PARAMS))
    client_tmp = tmp_path / "client-tmp"
    client_tmp.mkdir()
    with _workers(tmp_path / "workers", 2) as (client, dirs):
        address = client.scheduler.address
        # the local-disk run on the same workers: the reference (its writes are expected)
        expected = run(str(demo.path), str(local), params=DEMO_PARAMS, backend=address,
                       report=False)
        client.run(lambda dask_worker: dask_worker.caiman_writes.clear())
        fs.put(str(local / "raw.zarr"), f"{BUCKET}/movie.zarr", recursive=True)
        monkeypatch.setattr(tempfile, "tempdir", str(client_tmp))  # the client's scratch
        out = f"s3://{BUCKET}/out"
        assert main(["run", f"s3://{BUCKET}/movie.zarr", "-o", out, "--params", str(params),
                     "--backend", address,
                     "--storage-option", f"key={s3['key']}",
                     "--storage-option", f"secret={s3['secret']}",
                     "--storage-option", f"endpoint_url={s3['endpoint_url']}"]) == 0
        again = run(f"s3://{BUCKET}/movie.zarr", out, params=DEMO_PARAMS, backend=address,
                    storage_options=s3)  # resumed from the records under the URL
        assert again.n_components == expected.n_components
        writes = client.run(lambda dask_worker: dask_worker.caiman_writes)
        assert len(writes) == 2 and all(w == [] for w in writes.values()), writes
        assert all(list(cwd.iterdir()) == [] for cwd, _ in dirs)

    fs.invalidate_cache()
    names = {p.split("/", 2)[2] for p in fs.find(f"{BUCKET}/out")}
    for part in ("run.json", ".lock", "params.json", "summary.json", "run.log",
                 "results.hdf5", "report.html", "report/mean.png",
                 "corrected.zarr/zarr.json", "work/cnmf-rechunked.zarr/zarr.json"):
        assert (part in names) == (part != ".lock"), part
    assert any(n.startswith("patches/") and n.endswith(".pkl") for n in names)
    summary = json.loads(fs.cat(f"{BUCKET}/out/summary.json"))
    assert summary["outdir"] == out and all(s["skipped"] for s in summary["stages"].values())
    assert "stage cnmf: done" in fs.cat(f"{BUCKET}/out/run.log").decode()

    fs.get(f"{BUCKET}/out/results.hdf5", str(tmp_path / "s3-results.hdf5"))
    found, _ = load_estimates(tmp_path / "s3-results.hdf5")
    assert_identical(found, expected)
    assert found.n_components == expected.n_components >= 5

    assert _files(client_tmp) == []  # the client's scratch is gone
    needles = [s3["secret"].encode(), s3["key"].encode()]
    for key in fs.find(BUCKET):
        data = fs.cat(key)
        assert not any(n in data for n in needles), key
    for path in _files(tmp_path / "workers", local):
        data = path.read_bytes()
        assert not any(n in data for n in needles), path


def test_wrong_credentials_fail_fast_naming_the_url_and_no_secret(tmp_path):
    import boto3
    import s3fs

    with moto_server() as endpoint:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="lab")
        key = iam.create_access_key(UserName="lab")["AccessKey"]
        good = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"],
                "endpoint_url": endpoint}
        s3fs.S3FileSystem(**good).mkdir(BUCKET)
        request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request).close()  # credentials are checked from now on
        wrong = {**good, "key": "AKIA" + "X" * 16, "secret": secrets.token_urlsafe(30)}
        start = time.monotonic()
        with pytest.raises(ConfigError) as caught:
            run(f"s3://{BUCKET}/movie.zarr", f"s3://{BUCKET}/out", params=DEMO_PARAMS,
                backend="single", storage_options=wrong)
        seconds = time.monotonic() - start
    message = str(caught.value)
    assert f"s3://{BUCKET}/out" in message and "credentials" in message, message
    assert wrong["secret"] not in message and good["secret"] not in message
    assert wrong["key"] not in message
    assert seconds < 15, seconds


def test_the_lock_is_a_create_if_absent_object_and_a_users_prefix_is_refused(s3):
    import s3fs

    from caiman_dask.errors import StoreExistsError
    from caiman_dask.pipeline.run import _check_folder
    from caiman_dask.pipeline.state import RunFolder

    url = f"s3://{BUCKET}/locked"
    first = RunFolder(url, storage_options=s3)
    first.lock()
    with pytest.raises(StoreExistsError, match="being written by another run"):
        RunFolder(url, storage_options=s3).lock()
    first.unlock()
    RunFolder(url, storage_options=s3).lock()  # free again
    s3fs.S3FileSystem(**s3).pipe_file(f"{BUCKET}/thesis/draft.txt", b"precious")
    with pytest.raises(StoreExistsError, match="not from a caiman-dask run"):
        _check_folder(RunFolder(f"s3://{BUCKET}/thesis", storage_options=s3))


def test_storage_options_from_the_command_line_and_secrets_masked(tmp_path):
    from caiman_dask.cli import build_parser
    from caiman_dask.cli.common import storage_options
    from caiman_dask.pipeline.redact import redact, secrets_of

    file = tmp_path / "s3.yaml"
    file.write_text("endpoint_url: http://127.0.0.1:9\nanon: false\n")
    args = build_parser().parse_args(
        ["run", "in.zarr", "-o", "out", "--storage-options", str(file),
         "--storage-option", "anon=true", "--storage-option", 'client_kwargs={"a": 1}'])
    assert storage_options(args) == {"endpoint_url": "http://127.0.0.1:9", "anon": True,
                                     "client_kwargs": {"a": 1}}
    options = {"key": "AKIAABCDEFGHIJKLMNOP", "secret": "hush-hush-0123",
               "client_kwargs": {"aws_session_token": "tok-4567"}, "endpoint_url": "http://h"}
    text = redact("denied: key=AKIAABCDEFGHIJKLMNOP secret hush-hush-0123 tok-4567 "
                  "s3://u:pw@b/x password=abc at http://h", secrets_of(options))
    assert text == "denied: key=*** secret *** *** s3://***@b/x password=*** at http://h"
    message = "NoCredentialsError: Unable to locate credentials; aws_secret_access_key: hush"
    assert redact(message) == ("NoCredentialsError: Unable to locate credentials; "
                               "aws_secret_access_key: ***")  # an error name is not a secret
