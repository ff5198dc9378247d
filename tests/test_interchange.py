"""Interchange with CaImAn itself: results HDF5 both ways, parameter JSON both ways.

Needs CaImAn importable (skipped otherwise). The layout-level tests without CaImAn are
in test_results_hdf5.py and test_pipeline_params.py.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("caiman")
from caiman.source_extraction.cnmf.cnmf import CNMF, load_CNMF  # noqa: E402
from caiman.source_extraction.cnmf.params import CNMFParams  # noqa: E402

from caiman_dask.pipeline.params import resolve_params  # noqa: E402
from caiman_dask.results import Estimates, load_estimates, save_estimates  # noqa: E402

pytestmark = [pytest.mark.caiman, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

D1, D2, K, T = 20, 24, 4, 50
USER = {"data": {"fr": 15.0, "decay_time": 0.7}, "init": {"K": 6, "gSig": [3, 3]},
        "patch": {"rf": 18, "stride": 5}, "motion": {"max_shifts": [7, 7], "pw_rigid": True},
        "merging": {"merge_thr": 0.75}, "quality": {"min_SNR": 2.5, "use_cnn": False}}


def _components(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    A = sp.random(D1 * D2, K, density=0.05, random_state=seed, format="csc")
    return dict(A=A, C=rng.random((K, T)), S=rng.random((K, T)), YrA=rng.random((K, T)),
                b=rng.random((D1 * D2, 1)), f=rng.random((1, T)), sn=rng.random(D1 * D2),
                idx_components=np.array([0, 2, 3]), idx_components_bad=np.array([1]),
                SNR_comp=rng.random(K), r_values=rng.random(K))


def _assert_same(ours: Any, theirs: Any) -> None:
    assert (sp.csc_matrix(ours.A) != sp.csc_matrix(theirs.A)).nnz == 0
    for name in ("C", "S", "YrA", "b", "f", "sn", "idx_components", "idx_components_bad",
                 "SNR_comp", "r_values"):
        np.testing.assert_array_equal(np.asarray(getattr(ours, name)),
                                      np.asarray(getattr(theirs, name)), err_msg=name)


def test_caimans_saved_results_load_with_ours(tmp_path: pathlib.Path) -> None:
    cnm = CNMF(1, params=CNMFParams(params_dict=USER))
    for name, value in _components().items():
        setattr(cnm.estimates, name, value)
    cnm.estimates.dims = cnm.dims = (D1, D2)
    path = tmp_path / "caiman.hdf5"
    cnm.save(str(path))
    est, params = load_estimates(path)
    _assert_same(est, cnm.estimates)
    assert est.dims == (D1, D2)
    assert params["init"]["K"] == 6 and params["patch"]["rf"] == 18
    assert params["init"]["method_init"] == "greedy_roi"


def test_our_results_load_with_caimans_load_cnmf(tmp_path: pathlib.Path) -> None:
    est = Estimates(dims=(D1, D2), **_components(1))
    run = resolve_params(USER)
    cnm = load_CNMF(str(save_estimates(tmp_path / "ours.hdf5", est, run.caiman_dict())))
    _assert_same(est, cnm.estimates)
    assert cnm.estimates.dims == (D1, D2)
    assert cnm.params.get("init", "K") == 6 and cnm.params.get("merging", "merge_thr") == 0.75
    assert tuple(cnm.params.get("motion", "max_shifts")) == (7, 7)


def test_caimans_params_object_saves_in_our_file(tmp_path: pathlib.Path) -> None:
    est = Estimates(dims=(D1, D2), **_components(2))
    opts = CNMFParams(params_dict=USER)
    cnm = load_CNMF(str(save_estimates(tmp_path / "ours.hdf5", est, opts)))
    assert cnm.params.get("patch", "stride") == 5
    assert cnm.params.get("quality", "min_SNR") == 2.5


@pytest.mark.parametrize("demo", ["params_demo_pipeline.json",
                                  "params_demo_caiman_basic_with_patches.json"])
def test_caimans_demo_json_becomes_our_run_params(demo: str, tmp_path: pathlib.Path) -> None:
    groups = json.loads(_demo_text(demo))
    path = tmp_path / demo
    path.write_text(json.dumps(groups))
    opts = CNMFParams(params_from_file=str(path))
    run = resolve_params(path)
    assert run.cnmf.init.K == opts.get("init", "K")
    assert list(run.cnmf.init.gSig) == list(opts.get("init", "gSig"))
    assert run.cnmf.patch.rf == opts.get("patch", "rf")
    assert list(run.motion.max_shifts) == list(opts.get("motion", "max_shifts"))
    assert run.motion.pw_rigid == opts.get("motion", "pw_rigid")


def test_our_run_params_become_caimans_params() -> None:
    run = resolve_params(USER)
    theirs = CNMFParams(params_dict=run.caiman_dict()).to_dict()
    compared = 0
    for group, values in run.to_dict().items():
        for key, value in values.items():
            if key in ("indices", "last_commit") or value is None or key not in theirs[group]:
                continue  # CaImAn's bookkeeping, derived defaults, keys of ours only
            assert _plain(theirs[group][key]) == _plain(value), f"{group}.{key}"
            compared += 1
    assert compared > 100
    for group, values in USER.items():
        for key, value in values.items():
            assert _plain(theirs[group][key]) == _plain(value), f"{group}.{key}"


def test_caimans_full_to_json_becomes_our_run_params(tmp_path: pathlib.Path) -> None:
    opts = CNMFParams(params_dict=USER)
    path = tmp_path / "params.json"
    path.write_text(opts.to_json())
    run = resolve_params(path)
    assert run.cnmf.init.K == 6 and list(run.motion.max_shifts) == [7, 7]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _demo_text(name: str) -> str:
    """One of the parameter files CaImAn's demos ship (installed under share/caiman)."""
    import sys

    for base in (pathlib.Path(sys.prefix) / "share" / "caiman" / "demos" / "general",):
        if (base / name).is_file():
            return (base / name).read_text()
    pytest.skip(f"CaImAn's demo parameter file {name} is not installed")
