"""Bad-input corpus through the main job: each case gives a clear error or a documented result.

Every case runs :func:`caiman_dask.pipeline.run` (``backend="single"``: the errors are
the same on a cluster, see test_faults.py) and checks three things: the error's type and
a message naming the file or parameter at fault (or the documented result), that no file
outside OUTDIR was created, changed or removed, and that the user's files are
byte-identical afterwards. test_pipeline.py already covers a non-empty user folder as
OUTDIR; test_movie_readers.py covers the readers one by one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask
import h5py
import numpy as np
import pytest
import tifffile
from moto_server import free_port, moto_server

from caiman_dask.demo import DEMO_PARAMS
from caiman_dask.errors import (
    ClusterError,
    ConfigError,
    MovieError,
    MovieNotFoundError,
    ParameterError,
    StoreExistsError,
)
from caiman_dask.pipeline import run
from caiman_dask.results import load_estimates

pytestmark = pytest.mark.timeout(60)

SHAPE = (60, 32, 32)


def small_params(**changes: Any) -> dict[str, Any]:
    """The demo parameters for 32x32 movies; ``changes`` as ``{"init.K": 3}``."""
    groups = copy.deepcopy(DEMO_PARAMS)
    groups["motion"].update(num_frames_split=30, max_shifts=[4, 4])
    groups["patch"] = {"rf": 10, "stride": 4, "only_init": True}
    groups["init"]["K"] = 3
    for name, value in changes.items():
        group, key = name.split(".")
        groups.setdefault(group, {})[key] = value
    return groups


def movie(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(50, SHAPE).astype(np.uint16)


def snapshot(root: pathlib.Path, skip: pathlib.Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` except under ``skip``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and skip not in path.parents and path != skip:
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class Case:
    """A bad input: how to make it, and the expected error (or None: it runs)."""

    make: Callable[[pathlib.Path], dict[str, Any]]  # -> run() keyword arguments
    error: type[BaseException] | None
    match: str = ""


def _tif(user: pathlib.Path, data: np.ndarray, name: str = "movie.tif") -> str:
    tifffile.imwrite(user / name, data)
    return str(user / name)


def _h5(user: pathlib.Path, data: np.ndarray, name: str = "movie.h5") -> str:
    with h5py.File(user / name, "w") as f:
        f["mov"] = data
    return str(user / name)


def _truncate(path: str) -> str:
    raw = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(raw[: len(raw) // 2])
    return path


def _garbage(user: pathlib.Path, name: str) -> str:
    (user / name).write_bytes(np.random.default_rng(1).bytes(5000))
    return str(user / name)


def _npy(user: pathlib.Path, data: np.ndarray, name: str = "movie.npy") -> str:
    np.save(user / name, data)
    return str(user / name)


def _params_file(user: pathlib.Path, name: str, text: str) -> dict[str, Any]:
    (user / name).write_text(text)
    return {"inputs": _tif(user, movie()), "params": str(user / name)}


def _with(inputs: str, **changes: Any) -> dict[str, Any]:
    return {"inputs": inputs, "params": small_params(**changes)}


CASES: dict[str, Case] = {
    # ------------------------------------------------------------ damaged files
    "truncated-tiff": Case(lambda u: _with(_truncate(_tif(u, movie()))), MovieError,
                           r"movie\.tif: damaged TIFF"),
    "garbage-tiff": Case(lambda u: _with(_garbage(u, "movie.tif")), MovieError,
                         r"movie\.tif: not a readable TIFF"),
    "empty-tiff": Case(lambda u: _with(_empty(u)), MovieError,
                       r"empty\.tif is an empty file"),
    "truncated-hdf5": Case(lambda u: _with(_truncate(_h5(u, movie()))), MovieError,
                           r"movie\.h5: not a readable HDF5"),
    "garbage-hdf5": Case(lambda u: _with(_garbage(u, "movie.h5")), MovieError,
                         r"movie\.h5: not a readable HDF5"),
    "hdf5-without-movie": Case(lambda u: _with(_h5(u, movie()[0])), MovieError,
                               r"movie\.h5: no 3-D or 4-D dataset"),
    "missing-file": Case(lambda u: _with(str(u / "nope.tif")), MovieNotFoundError, r"nope\.tif"),
    "glob-matches-nothing": Case(lambda u: _with(str(u / "*.tiff")), MovieNotFoundError,
                                 r"\*\.tiff"),
    "files-that-do-not-match": Case(
        lambda u: {"inputs": [_tif(u, movie(), "a.tif"), _tif(u, movie()[:, :16], "b.tif")],
                   "params": small_params()}, MovieError, r"b\.tif has frames \(16, 32\)"),
    # ------------------------------------------------------------ shapes
    "wrong-dims-5d": Case(lambda u: _with(_npy(u, movie()[..., None, None])), MovieError,
                          r"movie\.npy: a movie must have 3 axes .* this one has 5"),
    "wrong-dims-1d": Case(lambda u: _with(_npy(u, movie()[0, 0])), MovieError,
                          r"movie\.npy: a movie must have 3 axes .* this one has 1"),
    "single-frame": Case(lambda u: _with(_tif(u, movie()[:1])), MovieError,
                         r"need T >= 8 frames"),
    "smaller-than-one-patch": Case(
        lambda u: {**_with(_tif(u, movie()[:, :12, :12]), **{"motion.max_shifts": [2, 2]}),
                   "motion": False}, ParameterError, r"patch\.rf=10 .* use rf <= 5"),
    "smaller-than-max-shifts": Case(lambda u: _with(_tif(u, movie()[:, :8, :8])),
                                    ParameterError, r"max_shifts=\(4, 4\).* use max_shifts"),
    # ------------------------------------------------------------ values and dtypes
    "all-nan": Case(lambda u: _with(_tif(u, np.full(SHAPE, np.nan, np.float32))), MovieError,
                    r"NaN or inf"),
    "some-inf": Case(lambda u: _with(_tif(u, np.where(movie() > 60, np.inf, movie())
                                          .astype(np.float32))), MovieError, r"NaN or inf"),
    "bool-dtype": Case(lambda u: _with(_npy(u, movie() > 50)), MovieError,
                       r"movie\.npy: pixel type bool is not supported"),
    "constant-movie": Case(lambda u: _with(_tif(u, np.full(SHAPE, 100, np.uint16))), None),
    "huge-values": Case(lambda u: _with(_tif(u, movie().astype(np.float32) * 1e30)),
                        MovieError, r"movie\.tif \(as .*raw\.zarr\): pixel values up to .* "
                        r"overflow"),
    "int8-dtype": Case(lambda u: _with(_tif(u, (movie() // 4).astype(np.int8))), None),
    "float64-dtype": Case(lambda u: _with(_tif(u, movie().astype(np.float64))), None),
    # ------------------------------------------------------------ parameters
    "json-syntax": Case(lambda u: _params_file(u, "p.json", '{"init": {"K": 3,}}'),
                        ConfigError, r"p\.json is not valid JSON"),
    "yaml-syntax": Case(lambda u: _params_file(u, "p.yaml", "init: {K: 3\npatch: [}"),
                        ConfigError, r"p\.yaml is not valid YAML"),
    "yaml-not-a-mapping": Case(lambda u: _params_file(u, "p.yaml", "- K: 3\n"), ConfigError,
                               r"p\.yaml must hold a mapping"),
    "params-file-missing": Case(lambda u: {"inputs": _tif(u, movie()),
                                           "params": str(u / "absent.json")}, ConfigError,
                                r"cannot read parameters from .*absent\.json"),
    "unknown-key": Case(lambda u: _with(_tif(u, movie()), **{"init.KK": 3}), ConfigError,
                        r"unknown CNMF parameter key 'KK' in group 'init'. Did you mean 'K'"),
    "unknown-group": Case(lambda u: _with(_tif(u, movie()), **{"inti.K": 3}), ConfigError,
                          r"group 'inti'. Did you mean 'init'"),
    "wrong-type-K": Case(lambda u: _with(_tif(u, movie()), **{"init.K": "five"}),
                         ParameterError, r"init\.K='five'"),
    "wrong-type-min-snr": Case(lambda u: _with(_tif(u, movie()), **{"quality.min_SNR": None}),
                               ParameterError, r"quality\.min_SNR=None"),
    "wrong-type-rval": Case(lambda u: _with(_tif(u, movie()), **{"quality.rval_thr": "high"}),
                            ParameterError, r"quality\.rval_thr='high'"),
    "stride-too-large": Case(lambda u: _with(_tif(u, movie()), **{"patch.stride": 50}),
                             ParameterError, r"patch\.stride=50"),
    "bad-override": Case(lambda u: {**_with(_tif(u, movie())), "overrides": ["init.K"]},
                         ConfigError, r"override 'init\.K': write GROUP\.KEY=VALUE"),
}


def _empty(user: pathlib.Path) -> str:
    (user / "empty.tif").write_bytes(b"")
    return str(user / "empty.tif")


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: pathlib.Path) -> None:
    case = CASES[name]
    user, outdir = tmp_path / "user", tmp_path / "out"
    user.mkdir()
    kwargs = case.make(user)
    before = snapshot(tmp_path, outdir)
    inputs = kwargs.pop("inputs")
    start = time.perf_counter()
    if case.error is None:
        estimates = run(inputs, str(outdir), backend="single", report=False, **kwargs)
        saved, _ = load_estimates(outdir / "results.hdf5")
        assert saved.n_components == estimates.n_components
        assert np.all(np.isfinite(saved.C)) and np.all(np.isfinite(saved.A.data))
    else:
        with pytest.raises(case.error, match=case.match) as info:
            run(inputs, str(outdir), backend="single", report=False, **kwargs)
        assert _frames(info.value) <= 25, "a deep traceback for a bad input"
        assert not (outdir / "results.hdf5").exists()
        assert not (outdir / ".lock").exists()  # the folder is released
    assert time.perf_counter() - start < 45
    assert snapshot(tmp_path, outdir) == before  # nothing outside OUTDIR, user files intact


def _frames(exc: BaseException) -> int:
    tb, n = exc.__traceback__, 0
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    return n


def test_documented_results_of_degenerate_movies(tmp_path: pathlib.Path) -> None:
    """A constant movie has no neurons: the run ends with 0 components, not an error."""
    user = tmp_path / "user"
    user.mkdir()
    estimates = run(_tif(user, np.full(SHAPE, 100, np.uint16)), str(tmp_path / "out"),
                    params=small_params(), backend="single", report=False)
    assert estimates.n_components == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_components"] == 0


# ---------------------------------------------------------------- outputs that are inputs


def test_outdir_is_an_existing_file_of_the_user(tmp_path: pathlib.Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    source = _tif(user, movie())
    before = snapshot(tmp_path, tmp_path / "none")
    with pytest.raises(StoreExistsError, match="is not a folder"):
        run(source, source, params=small_params(), backend="single", report=False)
    assert snapshot(tmp_path, tmp_path / "none") == before


def test_outdir_is_the_folder_holding_the_input(tmp_path: pathlib.Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    source = _tif(user, movie())
    (user / "params.json").write_text(json.dumps(small_params()))  # the user's own file
    before = snapshot(tmp_path, tmp_path / "none")
    with pytest.raises(StoreExistsError, match="not from a caiman-dask run"):
        run(source, str(user), params=str(user / "params.json"), backend="single",
            report=False)
    assert snapshot(tmp_path, tmp_path / "none") == before


def test_input_is_the_outdirs_own_store(tmp_path: pathlib.Path) -> None:
    """Documented: a finished run's raw.zarr may be the input of a rerun into its folder."""
    user, out = tmp_path / "user", tmp_path / "out"
    user.mkdir()
    first = run(_tif(user, movie()), str(out), params=small_params(), backend="single",
                report=False)
    again = run(str(out / "raw.zarr"), str(out), params=small_params(), backend="single",
                report=False)
    assert again.n_components == first.n_components
    np.testing.assert_allclose(again.C, first.C, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- services


def test_unreachable_scheduler_fails_fast(tmp_path: pathlib.Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with dask.config.set({"caiman-dask.cluster.connect-timeout": 3}):
        with pytest.raises(ClusterError, match=f"cannot reach the scheduler at {address}"):
            run(_tif(user, movie()), str(tmp_path / "out"), params=small_params(),
                backend=address, report=False)
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "out" / ".lock").exists()


@pytest.fixture(scope="module")
def moto_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.mark.s3
def test_s3_without_credentials_names_the_url(tmp_path, moto_endpoint, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    url = "s3://movies/movie.tif"
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot read s3://movies/movie\.tif: NoCredentials"):
        run(url, str(tmp_path / "out"), params=small_params(), backend="single", report=False,
            storage_options={"endpoint_url": moto_endpoint})
    assert time.perf_counter() - start < 30
