"""Estimates and the CaImAn-compatible HDF5 results file."""

from __future__ import annotations

import hashlib
import math
import pathlib

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from caiman_dask.errors import ParameterError, ResultsError, ResultsNotFoundError, StoreExistsError
from caiman_dask.results import (
    PARAM_GROUPS,
    Estimates,
    load_estimates,
    load_extra,
    masks_to_sparse,
    save_estimates,
)

D1, D2, K, T = 12, 17, 9, 40  # non-square frame on purpose

PARAMS = {
    "data": {"fr": 30.0, "decay_time": 0.4, "dims": (D1, D2), "fnames": ["a.tif", "b é.tif"],
             "var_name_hdf5": "mov", "dxy": (1.5, 1.5), "last_commit": ""},
    "init": {"K": 5, "gSig": [4, 4], "method_init": "greedy_roi", "normalize_init": True,
             "ssub_B": np.int32(2), "alpha_snmf": 0.5, "max_iter_snmf": -1},
    "motion": {"max_shifts": (6, 6), "pw_rigid": False, "border_nan": "copy",
               "indices": (slice(None), slice(2, 10, None)), "shifts_opencv": True},
    "spatial": {"se": np.ones((3, 3), dtype=np.uint8), "n_pixels_per_process": None,
                "nb": 1, "thr": float("nan"), "empty": []},
    "temporal": {"noise_range": [0.25, 0.5], "s_min": None, "lags": 5, "bas_nonneg": False},
    "quality": {},
}


def _random_estimates(seed: int = 0, k: int = K) -> Estimates:
    rng = np.random.default_rng(seed)
    A = sp.random(D1 * D2, k, density=0.15, format="csc", random_state=seed, dtype=np.float32)
    C = rng.random((k, T))
    if k:
        C[0, 0], C[0, 1] = np.nan, -0.0  # bit-exactness includes NaN and signed zero
    return Estimates(
        A=A, dims=(D1, D2), C=C, S=rng.random((k, T)).astype(np.float32),
        b=rng.random((D1 * D2, 2)), f=rng.random((2, T)), YrA=rng.random((k, T)),
        g=rng.random((k, 2)), sn=rng.random(D1 * D2),
        bl=rng.random(k), c1=rng.random(k), neurons_sn=rng.random(k),
        idx_components=np.arange(0, k, 2), idx_components_bad=np.arange(1, k, 2, dtype=np.int32),
        SNR_comp=rng.random(k), r_values=rng.random(k),
    )


def _same(a, b) -> bool:
    """Equal values of the same types, arrays bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return a.hex() == b.hex() or (math.isnan(a) and math.isnan(b))
    return a == b


def _assert_same_estimates(a: Estimates, b: Estimates) -> None:
    assert b.dims == a.dims and b.A.format == "csc" and b.A.shape == a.A.shape
    for part in ("data", "indices", "indptr"):
        assert _same(getattr(a.A, part), getattr(b.A, part)), part
    for name in ("C", "S", "b", "f", "YrA", "g", "sn", "bl", "c1", "neurons_sn",
                 "idx_components", "idx_components_bad", "SNR_comp", "r_values"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or _same(x, y), name


def test_round_trip_is_lossless(tmp_path: pathlib.Path) -> None:
    est = _random_estimates()
    extra = {"run": {"backend": "local", "seconds": 1.25, "n": [1, 2, 3]}, "note": "ok"}
    path = save_estimates(tmp_path / "res.hdf5", est, PARAMS, extra=extra)
    loaded, params = load_estimates(path)
    _assert_same_estimates(est, loaded)
    assert _same(params, PARAMS)
    assert _same(load_extra(path), extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.hdf5"]  # no temp left


def test_none_and_empty_fields(tmp_path: pathlib.Path) -> None:
    A = sp.random(D1 * D2, 4, density=0.2, format="csc", random_state=3)
    est = Estimates(A=A, dims=(D1, D2), idx_components=np.zeros(0, dtype=np.int64))
    loaded, params = load_estimates(save_estimates(tmp_path / "r.h5", est, {}))
    assert params == {}
    assert loaded.C is None and loaded.g is None and loaded.idx_components_bad is None
    assert loaded.idx_components.dtype == np.int64 and loaded.idx_components.size == 0
    assert loaded.accepted().n_components == 0  # empty accepted set, not "all"


def test_no_components_round_trip(tmp_path: pathlib.Path) -> None:
    est = _random_estimates(k=0)
    loaded, _ = load_estimates(save_estimates(tmp_path / "empty.hdf5", est, PARAMS))
    _assert_same_estimates(est, loaded)
    assert loaded.n_components == 0 and loaded.centroids().shape == (0, 2)


def test_refuses_to_overwrite(tmp_path: pathlib.Path) -> None:
    path = save_estimates(tmp_path / "r.hdf5", _random_estimates(1), PARAMS)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        save_estimates(path, _random_estimates(2), PARAMS)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    save_estimates(path, _random_estimates(2), PARAMS, overwrite=True)
    _assert_same_estimates(_random_estimates(2), load_estimates(path)[0])


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_write_leaves_no_file(tmp_path: pathlib.Path, overwrite: bool) -> None:
    path = tmp_path / "r.hdf5"
    before = None
    if overwrite:
        save_estimates(path, _random_estimates(1), PARAMS)
        before = path.read_bytes()
    # the estimates and params are written first; the extra object fails midway
    with pytest.raises(ResultsError, match="extra/bad"):
        save_estimates(path, _random_estimates(), PARAMS, extra={"bad": object()},
                       overwrite=overwrite)
    if overwrite:
        assert path.read_bytes() == before  # the old results survive untouched
    else:
        assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["r.hdf5"] if overwrite else [])


@pytest.mark.parametrize("value", [[1, 2.5], ((1, 2), (3, 4)), "nul\x00end"])
def test_values_that_would_not_load_back_are_refused(tmp_path, value) -> None:
    params = {"data": {"odd": value}}
    with pytest.raises(ResultsError, match="data/odd"):
        save_estimates(tmp_path / "r.hdf5", _random_estimates(), params)
    assert list(tmp_path.iterdir()) == []


def test_bad_params_and_paths_are_refused(tmp_path: pathlib.Path) -> None:
    est = _random_estimates()
    with pytest.raises(ParameterError, match="must be an Estimates"):
        save_estimates(tmp_path / "r.hdf5", {"A": est.A}, PARAMS)
    with pytest.raises(ResultsError, match="load_CNMF reads only"):
        save_estimates(tmp_path / "r.hdf5", est, {"dask": {"workers": 2}})
    with pytest.raises(ResultsError, match=r"\.hdf5 or \.h5"):
        save_estimates(tmp_path / "r.npz", est, PARAMS)
    with pytest.raises(ResultsError, match="directory does not exist"):
        save_estimates(tmp_path / "missing" / "r.hdf5", est, PARAMS)
    with pytest.raises(ResultsNotFoundError):
        load_estimates(tmp_path / "nothing.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(ResultsError, match="not a readable HDF5"):
        load_estimates(tmp_path / "text.hdf5")


def test_layout_is_what_caimans_loader_reads(tmp_path: pathlib.Path) -> None:
    est = _random_estimates()
    path = save_estimates(tmp_path / "r.hdf5", est, PARAMS)
    with h5py.File(path, "r") as h5:
        # load_CNMF: top-level members become CNMF attributes
        assert {"dims", "dview", "estimates", "params"} <= set(h5.keys())
        assert h5["dview"][()] == b"NoneType"
        assert h5["dims"][()].tolist() == [D1, D2]
        assert h5["skip_refinement"].dtype == bool
        # params: one group per CNMFParams group, each handed to CNMFParams.set()
        assert set(h5["params"].keys()) <= set(PARAM_GROUPS)
        assert all(isinstance(h5["params"][g], h5py.Group) for g in h5["params"])
        assert h5["params/init"].attrs["method_init"] == "greedy_roi"  # strings: attributes
        assert h5["params/motion/max_shifts"][()].tolist() == [6, 6]
        assert h5["params/data/fnames"][()].tolist() == [b"a.tif", "b é.tif".encode()]
        assert h5["params/spatial/n_pixels_per_process"][()] == b"NoneType"
        # estimates: sparse A as data/indices/indptr/shape of its csc form
        a = h5["estimates/A"]
        assert set(a.keys()) == {"data", "indices", "indptr", "shape"}
        rebuilt = sp.csc_matrix((a["data"][()], a["indices"][()], a["indptr"][()]),
                                shape=tuple(a["shape"][()]))
        assert (rebuilt != est.A).nnz == 0
        assert h5["estimates/C"].shape == (K, T) and h5["estimates/dims"][()].tolist() == [D1, D2]
        assert h5["estimates/idx_components"][()].tolist() == [0, 2, 4, 6, 8]
        # group attributes are read as values by CaImAn: ours add none outside caiman_dask/
        assert not h5.attrs and not h5["estimates"].attrs and not h5["estimates/A"].attrs


def _write_caiman_style(path: pathlib.Path, A: sp.csc_matrix, W: sp.csc_matrix) -> None:
    """A file laid out as CaImAn's save_dict_to_hdf5 writes it (no type tags)."""
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as h5:
        h5["dview"], h5["dims"] = "NoneType", np.array([D1, D2])
        h5["skip_refinement"], h5["remove_very_bad_comps"] = False, False
        h5.attrs["mmap_file"] = "/data/Yr.mmap"
        e = h5.create_group("estimates")
        for key, m in (("A", A), ("W", W)):
            for part in ("data", "indices", "indptr"):
                e[f"{key}/{part}"] = getattr(m, part)
            e[f"{key}/shape"] = np.array(m.shape)
        e["C"], e["g"], e["dims"] = rng.random((3, T)), 0, "NoneType"  # g=None is saved as 0
        e["idx_components"] = np.array([])  # an empty list becomes an empty float array
        e["bl"], e["S"] = np.array([0.1, 0.2, 0.3]), "NoneType"
        p = h5.create_group("params")
        p.create_group("data").attrs["var_name_hdf5"] = "mov"
        p["data/fnames"] = np.array([b"m.tif"])
        p["data/fr"], p["data/dims"] = 30, np.array([D1, D2])
        p["motion/pw_rigid"], p["motion/max_shifts"] = np.bool_(True), np.array([6, 6])
        p["init/method_init"] = "greedy_roi"  # CaImAn < 1.9.9 stored strings as datasets


def test_reads_files_in_caimans_own_layout(tmp_path: pathlib.Path) -> None:
    A = sp.random(D1 * D2, 3, density=0.2, format="csc", random_state=4)
    W = sp.random(D1 * D2, D1 * D2, density=0.01, format="csc", random_state=5)
    path = tmp_path / "caiman.hdf5"
    _write_caiman_style(path, A, W)
    est, params = load_estimates(path)
    assert est.dims == (D1, D2)  # estimates/dims None -> top-level dims, as load_CNMF does
    assert (est.A != A).nnz == 0 and est.n_components == 3 and est.g is None and est.S is None
    assert est.idx_components.dtype.kind == "i" and est.idx_components.size == 0
    assert params["data"]["var_name_hdf5"] == "mov"
    assert params["init"]["method_init"] == "greedy_roi"
    assert params["data"]["dims"] == (D1, D2) and params["motion"]["max_shifts"] == (6, 6)
    assert params["motion"]["pw_rigid"] is True and params["data"]["fr"] == 30
    assert load_extra(path) == {}


def test_estimates_validation_and_select() -> None:
    est = _random_estimates()
    with pytest.raises(ParameterError, match="d1\\*d2"):
        Estimates(A=sp.csc_matrix((D1 * D2 + 1, 2)), dims=(D1, D2))
    with pytest.raises(ParameterError, match="Estimates.C"):
        Estimates(A=est.A, dims=(D1, D2), C=np.zeros((K + 1, T)))
    with pytest.raises(ParameterError, match="idx_components"):
        Estimates(A=est.A, dims=(D1, D2), idx_components=np.array([K]))
    sub = est.select([6, 1, 2])
    assert sub.n_components == 3 and np.array_equal(sub.C[1:], est.C[[1, 2]], equal_nan=True)
    assert sub.idx_components.tolist() == [0, 2] and sub.idx_components_bad.tolist() == [1]
    assert sub.idx_components_bad.dtype == np.int32
    assert (sub.A != est.A[:, [6, 1, 2]]).nnz == 0 and sub.b is est.b
    acc = est.accepted()
    assert acc.n_components == 5 and acc.idx_components.tolist() == list(range(5))


def test_footprints_and_centroids_use_f_order() -> None:
    masks = np.zeros((2, D1, D2))
    masks[0, 10, 15] = 1.0  # one pixel near the far corner of a 12 x 17 frame
    masks[1, 2:5, 7] = [1.0, 2.0, 1.0]
    A = masks_to_sparse(masks)
    assert A[10 + D1 * 15, 0] == 1.0 and A.nnz == 4  # pixel (r, c) is row r + d1*c
    assert np.array_equal(A[:, 1].toarray().ravel(), masks[1].ravel(order="F"))
    est = Estimates(A=A, dims=(D1, D2))
    assert np.array_equal(est.footprints(), masks)
    assert np.array_equal(est.footprints([1]), masks[1:])
    assert np.allclose(est.centroids(), [[10.0, 15.0], [3.0, 7.0]])


@pytest.mark.caiman
def test_caimans_load_cnmf_reads_our_file(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("caiman.source_extraction.cnmf.cnmf")
    from caiman.source_extraction.cnmf.cnmf import load_CNMF

    est = _random_estimates()
    cnm = load_CNMF(str(save_estimates(tmp_path / "r.hdf5", est, PARAMS)))
    assert (cnm.estimates.A != est.A).nnz == 0 and cnm.estimates.dims == (D1, D2)
    assert cnm.params.get("init", "method_init") == "greedy_roi"
